"""Months: parsing `YYYY-MM`, inclusive ranges, and the open-ended walk to the newest published month."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Iterator, List, Optional

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month; `str(month)` is `YYYY-MM`, the form used in URLs, state and `source_month`."""

    year: int
    month: int

    @classmethod
    def parse(cls, value: str) -> Month:
        """Parse `YYYY-MM`; ValueError with the offending value otherwise."""
        m = _MONTH_RE.match(value.strip()) if isinstance(value, str) else None
        if not m:
            raise ValueError(f"bad month {value!r}: expected YYYY-MM, e.g. 2019-01")
        if not 1 <= int(m.group(2)) <= 12:
            raise ValueError(f"bad month {value!r}: the month is 01 to 12")
        month = cls(int(m.group(1)), int(m.group(2)))
        if month < FIRST_MONTH:
            raise ValueError(f"bad month {value!r}: the TLC trip data starts {FIRST_MONTH}")
        return month

    @classmethod
    def of(cls, day: dt.date) -> Month:
        """The month a date falls in."""
        return cls(day.year, day.month)

    def next(self) -> Month:
        """The following month."""
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def minus(self, months: int) -> Month:
        """The month `months` months earlier."""
        index = self.year * 12 + self.month - 1 - months
        return Month(index // 12, index % 12 + 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


FIRST_MONTH = Month(2009, 1)
"""The first month the TLC publishes trip records for (yellow)."""
START_MONTH_SETTING = "sources.taxi.start_month (SOURCES__TAXI__START_MONTH)"


def month_range(start: Month, end: Month) -> List[Month]:
    """Every month from `start` to `end`, both included; ValueError if they are reversed."""
    if end < start:
        raise ValueError(f"--start {start} is after --end {end}")
    months, m = [], start
    while m <= end:
        months.append(m)
        m = m.next()
    return months


def month_spans(months: List[str]) -> str:
    """`YYYY-MM` months as consecutive spans: `2024-05, 2024-10..2024-12`."""
    spans: List[List[Month]] = []
    for month in sorted({Month.parse(m) for m in months}):
        if spans and spans[-1][-1].next() == month:
            spans[-1][-1] = month
        else:
            spans.append([month, month])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in spans)


def months_from(start: Month, today: Optional[dt.date] = None) -> Iterator[Month]:
    """Months from `start` up to the current month (the open-ended walk; callers stop at the first unpublished)."""
    last = Month.of(today or dt.date.today())
    m = start
    while m <= last:
        yield m
        m = m.next()


def resolve_months(
    month: Optional[str], start: Optional[str], end: Optional[str], default_start: str
) -> tuple[Optional[List[Month]], Month]:
    """Turn CLI-style month options into an explicit list, or None for an open-ended run from a start month.

    Returns `(months, start)`: `months` is the explicit inclusive list (`--month`, or `--start` with `--end`,
    or `--end` alone from the configured start), or None when the run walks from `start` to the newest
    published month. An empty value (an unset shell variable) is a ValueError, never "not given": it would
    otherwise turn one month into a catch-up of every month since the start. Errors name the option or setting.
    """
    one, first, last = _given(month, "--month"), _given(start, "--start"), _given(end, "--end")
    if one and (first or last):
        raise ValueError("give either --month or --start/--end, not both")
    if one:
        return [one], one
    first = first or _given(default_start, START_MONTH_SETTING)
    if last:
        return month_range(first, last), first
    return None, first


def _given(value: Optional[str], name: str) -> Optional[Month]:
    """The month a `YYYY-MM` option or setting gives (None: not given); ValueError naming `name` otherwise."""
    if value is None:
        return None
    if not str(value).strip():
        raise ValueError(f"{name} is empty: give a month YYYY-MM, or leave it out")
    try:
        return Month.parse(str(value))
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
