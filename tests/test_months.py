from __future__ import annotations

import datetime as dt

import pytest

from taxi_pipeline.months import Month, month_range, months_from, resolve_months


def test_parse_and_format():
    assert str(Month.parse("2019-01")) == "2019-01"
    assert Month.parse("2019-12").next() == Month(2020, 1)


@pytest.mark.parametrize("bad", ["2019-1", "2019-00", "2019-13", "19-01", "2019/01", "", "2008-12"])
def test_bad_months(bad):
    with pytest.raises(ValueError, match="bad month"):
        Month.parse(bad)


def test_ranges_are_inclusive_and_ordered():
    assert [str(m) for m in month_range(Month(2019, 11), Month(2020, 2))] == [
        "2019-11",
        "2019-12",
        "2020-01",
        "2020-02",
    ]
    with pytest.raises(ValueError, match="after"):
        month_range(Month(2020, 2), Month(2019, 11))


def test_open_ended_walk_ends_at_current_month():
    assert [str(m) for m in months_from(Month(2026, 10), dt.date(2026, 11, 25))] == ["2026-10", "2026-11"]


def test_resolve_months():
    assert resolve_months("2019-03", None, None, "2019-01") == ([Month(2019, 3)], Month(2019, 3))
    assert resolve_months(None, None, None, "2019-01") == (None, Month(2019, 1))
    assert resolve_months(None, "2020-01", None, "2019-01") == (None, Month(2020, 1))
    assert resolve_months(None, None, "2019-02", "2019-01")[0] == [Month(2019, 1), Month(2019, 2)]
