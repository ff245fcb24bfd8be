"""Run the CLI and freeze it at a named point of a load so a test can `kill -9` it (or signal it) exactly there.

    python -m tests.killpoint POINT N MARKER -- <taxi_pipeline arguments>

On the N-th time the run reaches POINT it writes its pid to the file MARKER and sleeps; the test waits for
MARKER, sends SIGKILL and checks what a normal rerun makes of what was left behind. Points, in load order:

extract     before dlt extracts a month (the file is downloaded and parsed inside extract)
normalize   extracted: a package with the month's files on local disk, nothing in the destination
load        normalized: the package is ready to load, nothing in the destination
job         loading: a trip table's load job, on dlt's loader thread, is about to write the month
commit      every job of the package (data, state) is in the destination, the load is not recorded as done
reconcile   the load is complete; before the month's rows are counted against the file's

The N-th call counts calls of that point (for `job`, load jobs of trip tables into the destination only, not
their uploads to a staging bucket). It sleeps `KILLPOINT_SECONDS` (default 600), then goes on.

Only the test's copy of the process is patched: the package has no test hooks.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Tuple


def _targets() -> dict[str, Tuple[Any, str]]:
    from dlt.common.destination.client import RunnableLoadJob
    from dlt.load.load import Load
    from dlt.pipeline.pipeline import Pipeline

    from taxi_pipeline import loading

    return {
        "extract": (Pipeline, "extract"),
        "normalize": (Pipeline, "normalize"),
        "load": (Pipeline, "load"),
        "job": (RunnableLoadJob, "run_managed"),
        "commit": (Load, "complete_package"),
        "reconcile": (loading, "_month_rows_after_load"),
    }


def freeze_at(point: str, nth: int, marker: Path) -> None:
    """Patch POINT so its `nth` call announces itself in `marker` and never returns."""
    owner, name = _targets()[point]
    original: Callable[..., Any] = getattr(owner, name)
    calls = 0

    seconds = float(os.environ.get("KILLPOINT_SECONDS", "600"))

    def frozen(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        if point != "job" or _writes_a_month(*args[:2]):
            calls += 1
            if calls == nth:
                marker.write_text(str(os.getpid()))
                time.sleep(seconds)
        return original(*args, **kwargs)

    setattr(owner, name, frozen)


def _writes_a_month(job: Any, job_client: Any) -> bool:
    """A trip table's load job into the destination; not the upload of its file to a staging bucket, which runs
    as a job of its own on the staging client (BigQuery, Snowflake through `gs://`/`s3://`)."""
    from dlt.destinations.impl.filesystem.filesystem import FilesystemClient

    return job.job_file_info().table_name.endswith("_tripdata") and not isinstance(job_client, FilesystemClient)


def main(argv: list[str]) -> int:
    point, nth, marker, sep, *cli_args = argv
    assert sep == "--", "usage: python -m tests.killpoint POINT N MARKER -- <arguments>"
    freeze_at(point, int(nth), Path(marker))
    from taxi_pipeline.cli import main as cli_main

    return cli_main(cli_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
