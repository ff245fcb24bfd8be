"""Operator experience: progress, the run summary, --quiet / --json / --kestra, `status`, `report`."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from typing import Dict, List

import pytest

from taxi_pipeline.progress import DONE, DOWNLOADED, ROWS, MonthProgress
from tests.conftest import month_counts

GREEN = ["--taxi", "green"]
HTML = b"<html><body>Service unavailable</body></html>"


def load(cli, mirror, *args: str):
    return cli("--base-url", mirror.url, *args)


def summary_table(out: str) -> List[List[str]]:
    """The indented summary table's rows (header first), cells split on runs of two or more spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.startswith("  ")]


def mixed_backfill(mirror, cli) -> None:
    """Jan–Apr loaded; then Mar republished, Apr replaced by an HTML page, May not published yet."""
    for month, rows in (("2019-01", 11), ("2019-02", 12), ("2019-03", 13), ("2019-04", 14)):
        mirror.trips("green", month, rows)
    assert load(cli, mirror, *GREEN, "--start", "2019-01", "--end", "2019-04").code == 0
    mirror.trips("green", "2019-03", 7, seed=1)
    mirror.put("/green/green_tripdata_2019-04.csv.gz", HTML)


MIXED = [*GREEN, "--start", "2019-01", "--end", "2019-05"]


# --- progress ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dest", ["duckdb", "postgres"])
def test_progress_is_plain_lines_on_stderr_when_not_a_terminal(request, dest, mirror, cli):
    """Rows are reported while read, also where the load job reads the file on dlt's loader thread."""
    if dest == "postgres":
        request.getfixturevalue("pg")
    mirror.trips("green", "2019-01", 30)
    mirror.trips("green", "2019-02", 20)
    r = load(cli, mirror, *GREEN, "--dest", dest, "--start", "2019-01", "--end", "2019-02")
    assert r.code == 0, r
    size = len(mirror.files["/green/green_tripdata_2019-01.csv.gz"][0])
    assert 1024 <= size < 1024 * 1024
    assert re.search(rf"^green_tripdata 2019-01: downloaded {size / 1024:.1f} KiB in \d+\.\ds$", r.err, re.M), r.err
    assert re.search(r"^green_tripdata 2019-01: 30 rows read in \d+\.\ds$", r.err, re.M), r.err
    assert re.search(r"^green_tripdata 2019-02: 20 rows read in", r.err, re.M), r.err
    assert re.search(r"^taxi_zone_lookup: \d+ rows read", r.err, re.M), r.err
    assert "rows read" not in r.out and "\r" not in r.err  # progress never mixes into stdout, no bar redraws


def test_progress_is_bars_on_a_terminal(mirror, cli, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    mirror.trips("green", "2019-01", 30)
    r = load(cli, mirror, *GREEN, "--month", "2019-01")
    assert r.code == 0, r
    shown = terminal.getvalue()
    assert "\rgreen_tripdata 2019-01 downloaded:" in shown and "B/s" in shown, shown
    assert "\rgreen_tripdata 2019-01 rows:" in shown, shown
    assert "rows read in" not in shown  # bars instead of lines


def test_plain_progress_reports_a_long_file_while_it_runs():
    """Between the lines at the end of a download and of reading, a slow file gets a line per period."""
    out = io.StringIO()
    progress = MonthProgress(out, bars=False, period=0)
    with progress("Extract"):
        progress.update("Resources", 1)  # dlt's own counters are not shown
        progress.update(DOWNLOADED, 512, 2048, label="yellow_tripdata 2019-01")
        progress.update(DOWNLOADED, 1536, 2048, label="yellow_tripdata 2019-01")
        progress.update(ROWS, 1_000_000, label="yellow_tripdata 2019-01")
        progress.update(ROWS, 500_000, label="yellow_tripdata 2019-01")
        progress.update(ROWS, 0, message=DONE, label="yellow_tripdata 2019-01")
    lines = out.getvalue().splitlines()
    assert lines[0] == "yellow_tripdata 2019-01: 512 B downloaded so far (25% of 2.0 KiB)"
    assert lines[1] == "yellow_tripdata 2019-01: 2.0 KiB downloaded so far (100% of 2.0 KiB)"
    assert re.fullmatch(r"yellow_tripdata 2019-01: downloaded 2\.0 KiB in \d+\.\ds", lines[2])
    assert lines[3:5] == [
        "yellow_tripdata 2019-01: 1,000,000 rows read so far",
        "yellow_tripdata 2019-01: 1,500,000 rows read so far",
    ]
    assert re.fullmatch(r"yellow_tripdata 2019-01: 1,500,000 rows read in \d+\.\ds", lines[5])
    assert len(lines) == 6 and "Resources" not in out.getvalue()


# --- summary -------------------------------------------------------------------------------------------------------


def test_summary_table_folds_month_ranges_and_names_every_outcome(mirror, cli):
    mixed_backfill(mirror, cli)
    r = load(cli, mirror, *MIXED)
    assert r.code == 1, r
    table = summary_table(r.out)
    assert table[0] == ["table", "months", "outcome", "files", "rows", "seconds"]
    body = [row[:5] for row in table[1:]]
    assert body == [
        ["taxi_zone_lookup", "-", "skipped", "1", "265"],
        ["green_tripdata", "2019-01..2019-02", "skipped", "2", "23"],
        ["green_tripdata", "2019-03", "replaced", "1", "7"],
        ["green_tripdata", "2019-04", "failed", "1", "-"],
        ["green_tripdata", "2019-05", "not published", "1", "-"],
    ]
    assert all(re.fullmatch(r"\d+\.\d", row[5]) for row in table[1:])
    assert r.out.splitlines()[-1] == "summary: 1 replaced, 3 skipped, 1 not published, 1 failed; 7 rows loaded"
    assert "green_tripdata 2019-04" in r.err


def test_json_summary_is_the_only_stdout(mirror, cli):
    mixed_backfill(mirror, cli)
    r = load(cli, mirror, *MIXED, "--json")
    assert r.code == 1, r
    doc = json.loads(r.out)  # nothing else on stdout
    assert doc["ok"] is False and doc["destination"] == "duckdb"
    files: Dict[str, dict] = {f"{f['table']} {f['month']}": f for f in doc["files"]}
    assert {k: (f["outcome"], f["rows"]) for k, f in files.items()} == {
        "taxi_zone_lookup None": ("skipped", 265),
        "green_tripdata 2019-01": ("skipped", 11),
        "green_tripdata 2019-02": ("skipped", 12),
        "green_tripdata 2019-03": ("replaced", 7),
        "green_tripdata 2019-04": ("failed", None),
        "green_tripdata 2019-05": ("not published", None),
    }
    assert "2019-04" in files["green_tripdata 2019-04"]["detail"]
    assert doc["totals"] == {"replaced": 1, "skipped": 3, "not published": 1, "failed": 1}
    assert doc["rows_loaded"] == 7 and doc["dbt"] is None
    assert "error: green_tripdata 2019-04" in r.err


def test_the_zone_lookup_is_not_given_the_seconds_of_the_month_it_loads_with(parallel_mirror, cli):
    mirror = parallel_mirror
    mirror.trips("green", "2019-01", 10)
    mirror.delay["/green/green_tripdata_2019-01.csv.gz"] = 2.0  # a slow month; the zone lookup is not
    r = load(cli, mirror, *GREEN, "--month", "2019-01", "--json")
    assert r.code == 0, r
    seconds = {f["table"]: f["seconds"] for f in json.loads(r.out)["files"]}
    assert seconds["green_tripdata"] >= 1.5, seconds
    assert seconds["taxi_zone_lookup"] < seconds["green_tripdata"] - 1.0, seconds


def test_quiet_prints_errors_only(mirror, cli):
    mirror.trips("green", "2019-01", 5)
    ok = load(cli, mirror, *GREEN, "--month", "2019-01", "--quiet")
    assert (ok.code, ok.out, ok.err) == (0, "", ""), ok
    mirror.put("/green/green_tripdata_2019-02.csv.gz", HTML)
    bad = load(cli, mirror, *GREEN, "--month", "2019-02", "--quiet")
    assert bad.code == 1 and bad.out == "", bad
    assert bad.err.splitlines() == [line for line in bad.err.splitlines() if line.startswith("error: ")]
    assert len(bad.err.splitlines()) == 1 and "2019-02" in bad.err


def test_quiet_and_json_do_not_go_together(cli):
    r = cli("--quiet", "--json")
    assert r.code == 2 and "not allowed with" in r.err, r
    r = cli("--json", "--kestra")
    assert r.code == 2 and "use one of them" in r.err, r


def test_failed_months_are_never_folded_into_a_range():
    from taxi_pipeline.pipeline import MonthResult
    from taxi_pipeline.summary import summary_rows

    results = [
        MonthResult("green_tripdata", "2019-01", "skipped", 5),
        MonthResult("green_tripdata", "2019-02", "skipped", None),
        MonthResult("green_tripdata", "2019-03", "failed", detail="a"),
        MonthResult("green_tripdata", "2019-04", "failed", detail="b"),
        MonthResult("green_tripdata", "2019-06", "skipped", 7),  # not consecutive with 2019-02's range
        MonthResult("yellow_tripdata", "2019-07", "skipped", 8),  # another table
    ]
    rows = [(r.table, r.span, r.outcome, r.months, r.rows) for r in summary_rows(results)]
    assert rows == [
        ("green_tripdata", "2019-01..2019-02", "skipped", 2, None),  # one unknown count: the sum is unknown
        ("green_tripdata", "2019-03", "failed", 1, None),
        ("green_tripdata", "2019-04", "failed", 1, None),
        ("green_tripdata", "2019-06", "skipped", 1, 7),
        ("yellow_tripdata", "2019-07", "skipped", 1, 8),
    ]


def test_a_broken_progress_stream_never_fails_a_load(mirror, duck):
    from taxi_pipeline import MonthProgress, run

    for month in ("2019-01", "2019-02"):
        mirror.trips("green", month, 10)
    for bars in (False, True):
        closed = io.StringIO()
        closed.close()  # every write raises ValueError, as a closed pipe raises OSError
        result = run(taxi_types="green", month="2019-0" + ("1" if not bars else "2"), base_url=mirror.url,
                     progress=MonthProgress(closed, bars=bars, period=0))  # fmt: skip
        assert result.ok, result
    assert month_counts(duck, "green_tripdata") == {"2019-01": 10, "2019-02": 10}


def test_json_stays_one_document_when_dbt_runs(mirror, cli, duck):
    pytest.importorskip("dbt.cli.main", reason="dbt is in the dbt extra")
    mirror.trips("green", "2019-01", 20)
    r = load(cli, mirror, *GREEN, "--month", "2019-01", "--dbt", "--json")
    assert r.code == 0, r
    doc = json.loads(r.out)
    assert doc["dbt"] == {"success": True, "failures": []} and doc["rows_loaded"] == 20 + 265
    assert "Completed successfully" in r.err  # dbt's own log went to stderr


def test_kestra_gets_outputs_metrics_and_progress_on_stdout(mirror, cli, duck):
    mirror.trips("green", "2019-01", 30)
    mirror.trips("green", "2019-02", 20)
    r = load(cli, mirror, *GREEN, "--start", "2019-01", "--end", "2019-03", "--kestra")
    assert r.code == 0, r
    marked = [line for line in r.out.splitlines() if line.startswith("::")]
    assert len(marked) == 1 and marked[0].endswith("::")
    message = json.loads(marked[0][2:-2])
    outputs = message["outputs"]
    assert outputs["ok"] is True and outputs["rows_loaded"] == 50 + 265
    assert outputs["files"] == {
        "taxi_zone_lookup": "loaded",
        "green_tripdata 2019-01": "loaded",
        "green_tripdata 2019-02": "loaded",
        "green_tripdata 2019-03": "not published",
    }
    assert outputs["newest_months"] == {"green": "2019-02"}
    rows = {m["tags"]["month"]: m["value"] for m in message["metrics"] if m["name"] == "rows"}
    assert rows == {"-": 265, **month_counts(duck, "green_tripdata")}
    timers = [m for m in message["metrics"] if m["name"] == "seconds"]
    assert len(timers) == 3 and all(m["type"] == "timer" and m["value"] > 0 for m in timers)
    files = {m["tags"]["outcome"]: m["value"] for m in message["metrics"] if m["name"] == "files"}
    assert files == {"loaded": 3, "not published": 1}
    assert "green_tripdata 2019-01: 30 rows read" in r.out and "rows read" not in r.err  # Kestra: stderr = WARN


def test_kestra_gets_ok_false_when_the_run_cannot_start(mirror, cli):
    del mirror.files["/misc/taxi_zone_lookup.csv"]  # a wrong --base-url: configuration, exit 2
    r = load(cli, mirror, *GREEN, "--month", "2019-01", "--kestra")
    assert r.code == 2, r
    (marked,) = [line for line in r.out.splitlines() if line.startswith("::")]
    outputs = json.loads(marked[2:-2])["outputs"]
    assert outputs["ok"] is False and "taxi_zone_lookup.csv" in outputs["error"] and outputs["rows_loaded"] == 0


# --- status --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--json", "--taxi", "green", "--month", ""], "--month is empty"),
        (["--json", "--dest", "postgres", "--bogus"], "unrecognized arguments: --bogus"),
        (["--kestra", "--dest=snowflake", "--month", "2019-1"], "bad month '2019-1'"),
        (["--kestra", "--json", "--taxi", "green"], "--json and --kestra both"),
        (["status", "--json", "--dest", "oracle"], "invalid choice: 'oracle'"),
    ],
)
def test_json_and_kestra_get_one_document_for_bad_arguments_too(cli, args, message):
    r = cli(*args)
    assert r.code == 2, r
    dest = {"postgres": "postgres", "--dest=snowflake": "snowflake", "oracle": "oracle"}
    expected = next((v for k, v in dest.items() if k in args), "duckdb")
    documents = [json.loads(r.out[: r.out.index("\n}") + 2])] if "--json" in args else []
    documents += [json.loads(line[2:-2])["outputs"] for line in r.out.splitlines() if line.startswith("::{")]
    assert len(documents) == (2 if "--json" in args and "--kestra" in args else 1), r
    for doc in documents:
        assert doc["ok"] is False and doc["destination"] == expected and message in doc["error"], r
    assert r.err.startswith("error: ") and message in r.err


@pytest.mark.parametrize("dbt", [False, True], ids=["load", "load-and-dbt"])
def test_a_reader_that_goes_away_does_not_stop_the_load(mirror, workdir, dbt):
    """`taxi-pipeline … | head -1`: the months after the closed pipe still load (and dbt builds), exit 0, no error."""
    import subprocess
    import sys

    if dbt:
        pytest.importorskip("dbt.cli.main", reason="dbt is in the dbt extra")
    for month, rows in (("2019-01", 5), ("2019-02", 6), ("2019-03", 7)):
        mirror.trips("green", month, rows)
        mirror.delay[f"/green/green_tripdata_{month}.csv.gz"] = 0.0 if month == "2019-01" else 1.0
    args = ["--base-url", mirror.url, *GREEN, "--start", "2019-01", "--end", "2019-03", *(["--dbt"] if dbt else [])]
    proc = subprocess.Popen(
        [sys.executable, "-m", "taxi_pipeline", *args], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    first = proc.stdout.readline()
    while dbt and b"Running with dbt" not in first:  # the reader goes while dbt writes: a pipe dbt inherited
        first = proc.stdout.readline()
    proc.stdout.close()  # as `head` does: every later line meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert any(word in first for word in (b"green_tripdata", b"taxi_zone_lookup", b"dbt")), first
    assert "error" not in err.lower() and "Broken pipe" not in err and "Exception ignored" not in err, err
    import duckdb

    with duckdb.connect(str(workdir / "taxi_pipeline.duckdb"), read_only=True) as con:
        counts = dict(con.execute("select source_month, count(*) from taxi_raw.green_tripdata group by 1").fetchall())
    assert counts == {"2019-01": 5, "2019-02": 6, "2019-03": 7}


def test_output_that_cannot_be_written_is_still_an_error(mirror, cli, workdir):
    """Only a reader going away is forgiven: `status --json > /dev/full` fails (exit 1, one line), as ever."""
    import subprocess
    import sys

    mirror.trips("green", "2019-01", 5)
    assert load(cli, mirror, *GREEN, "--month", "2019-01").code == 0
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "taxi_pipeline", "status", "--json"], cwd=workdir, stdout=full,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert done.returncode == 1 and "No space left on device" in done.stderr, done
    assert "Traceback" not in done.stderr


def test_status_json_reads_what_is_loaded_from_the_destination(mirror, cli, workdir):
    mirror.trips("green", "2019-01", 11)
    mirror.trips("yellow", "2019-01", 9)
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    assert load(cli, mirror, "--taxi", "green,yellow", "--month", "2019-01").code == 0
    import shutil

    shutil.rmtree(workdir / "dlt")  # another machine: nothing local, only the destination
    r = cli("status", "--json")
    assert r.code == 0, r
    doc = json.loads(r.out)
    got = {(f["table"], f["month"]): f for f in doc["files"]}
    assert set(got) == {("taxi_zone_lookup", None), ("green_tripdata", "2019-01"), ("yellow_tripdata", "2019-01")}
    green = got[("green_tripdata", "2019-01")]
    assert (green["rows"], green["rows_in_destination"]) == (11, 11)
    assert got[("yellow_tripdata", "2019-01")]["rows_in_destination"] == 9
    content, etag, modified = mirror.files["/green/green_tripdata_2019-01.csv.gz"]
    assert etag in green["fingerprint"] and f"size={len(content)}" in green["fingerprint"]
    assert dt.datetime.fromisoformat(green["loaded_at"]) >= before
