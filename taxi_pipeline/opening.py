"""The dlt pipeline of a destination, opened for a run (under its run lock) or for reading (`status`, `report`).

One pipeline name per destination (`taxi_pipeline_<destination>`), one local working folder per destination
location and dataset; settings the dlt way (`sources.taxi.*`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any, Callable, Iterator, Optional, Tuple

import dlt
from dlt.common.configuration.exceptions import ConfigurationException
from dlt.common.destination.reference import Destination
from dlt.common.pipeline import get_dlt_pipelines_dir
from dlt.common.runtime.collector import NULL_COLLECTOR, Collector

from taxi_pipeline.destinations import (
    check_destination,
    destination_error,
    destination_location,
    make_destination,
    read_lock,
    run_lock,
)
from taxi_pipeline.destinations.locking import SIDE_BY_SIDE, RunLock, working_folder
from taxi_pipeline.errors import ConfigError, one_line
from taxi_pipeline.interrupts import scratch_folder
from taxi_pipeline.settings import DEFAULT_DATASET, PIPELINE_NAME_PREFIX

STAGED = ("snowflake", "bigquery")
"""The destinations that can load through a bucket of their own (`taxi_pipeline.staging = filesystem`)."""


def setting(key: str, default: Any) -> Any:
    """A `sources.taxi.<key>` value from dlt config (env `SOURCES__TAXI__<KEY>`, `.dlt/config.toml`)."""
    try:
        value = dlt.config.get(f"sources.taxi.{key}")
    except ConfigurationException as exc:
        raise ConfigError(
            f"cannot read dlt config (.dlt/config.toml, .dlt/secrets.toml, env): {one_line(exc)}"
        ) from None
    return default if value is None else value


def make_pipeline(
    destination: str = "duckdb",
    dataset_name: Optional[str] = None,
    progress: Optional[Collector] = None,
    folder: Optional[str] = None,
    read_only: bool = False,
    dest: Optional[Destination] = None,
) -> dlt.Pipeline:
    """The dlt pipeline `taxi_pipeline_<destination>` writing to the raw dataset (`taxi_raw` by default).

    The name stays the same for every database (state in the destination is found by it), but each destination
    location and dataset gets its own local working folder: dlt's local schema and state assume one destination,
    so a dev and a prod database must not share one. `progress`: a dlt collector (see `taxi_pipeline.progress`);
    `folder`: another working folder for the same destination and dataset (`locking.working_folder`);
    `read_only`: a DuckDB file is opened read-only (`reading`); `dest`: the destination, made already.
    """
    dest = dest or make_destination(destination, read_only)
    name = pipeline_name(destination)
    dataset = _dataset(dataset_name)
    pipelines_dir = folder or working_folder_of(destination, dest, dataset)
    if dlt.config.get("data_writer.disable_compression") is None:
        # dlt gzips its own short-lived intermediate files by default: most of a Postgres load's time (FACTS.md).
        # Scoped to this pipeline's config section, so other dlt pipelines in the process are not affected.
        dlt.config[f"{name}.data_writer.disable_compression"] = True
    if destination == "duckdb":
        if dlt.config.get("data_writer.compression") is None:
            # the parquet file is read once from local disk: snappy only costs time
            dlt.config[f"{name}.data_writer.compression"] = "none"
    # optional external stage for Snowflake and BigQuery ("filesystem" with [destination.filesystem] bucket_url =
    # "s3://…" or "gs://…")
    staging = (dlt.config.get("taxi_pipeline.staging") or None) if destination in STAGED else None
    pipeline = dlt.pipeline(
        pipeline_name=name,
        pipelines_dir=pipelines_dir,
        destination=dest,
        staging=staging,
        dataset_name=dataset,
        progress=progress or NULL_COLLECTOR,
    )
    # dlt would hold a SIGINT/SIGTERM that arrives while a month is normalized or loaded until its step ends, then
    # forget it: the run would go on as if nothing happened. Signals stay with the caller (see `interrupts`).
    pipeline.runtime_config.intercept_signals = False
    return pipeline


def _dataset(dataset_name: Optional[str] = None) -> str:
    return dataset_name or dlt.config.get("taxi_pipeline.dataset_name") or DEFAULT_DATASET


def pipeline_name(destination: str) -> str:
    """The dlt pipeline name of a destination (`taxi_pipeline_<destination>`), the same for every database."""
    return f"{PIPELINE_NAME_PREFIX}_{destination}"


def working_folder_of(destination: str, dest: Any, dataset: str) -> str:
    """The local working folder of a destination's pipeline: one per destination location and dataset."""
    key = hashlib.sha1(f"{destination}|{destination_location(dest)}|{dataset}".encode()).hexdigest()[:10]
    return os.path.join(get_dlt_pipelines_dir(), f"{pipeline_name(destination)}-{dataset}-{key}")


@contextlib.contextmanager
def opened(
    destination: str, on_notice: Optional[Callable[[str], None]] = None, progress: Optional[Collector] = None
) -> Iterator[Tuple[dlt.Pipeline, RunLock]]:
    """The destination's pipeline under the run lock, reachable, state restored from the destination.

    State is taken from the destination when the local folder is new or behind. Failing to reach the destination
    is configuration to fix (exit 2), naming the credentials setting.
    """
    shared = destination in SIDE_BY_SIDE  # runs load side by side, month by month (`locking`)
    # the folder is taken before dlt opens it: two runs creating one new folder at once would wipe each other's
    dest = make_destination(destination)
    home = working_folder_of(destination, dest, _dataset())
    with working_folder(home, pipeline_name(destination), shared, on_notice) as folder:
        pipeline = make_pipeline(destination, progress=progress, folder=folder, dest=dest)
        with run_lock(pipeline, on_wait=on_notice) as lock:
            _connect(pipeline)
            yield pipeline, lock


def _connect(pipeline: dlt.Pipeline, restore_state: bool = True) -> None:
    """Reach the destination once and (`restore_state`) restore dlt state from it; ConfigError when it fails."""
    check_destination(pipeline)
    if restore_state:
        try:
            pipeline.sync_destination()
        except Exception as exc:
            raise destination_error(pipeline, exc) from exc


def require_database(destination: str) -> None:
    """Raise ConfigError naming the path when a DuckDB database to read does not exist (instead of creating it).

    `status`, `report` and `dbt` read what is loaded: an empty new file and its lock would only hide a wrong path.
    """
    if destination != "duckdb":
        return
    path = destination_location(make_destination(destination))
    if path and not os.path.exists(path):
        raise ConfigError(
            f"no DuckDB database at {path}: nothing is loaded there (check DESTINATION__DUCKDB__CREDENTIALS, "
            "or the working directory for the default taxi_pipeline.duckdb)"
        )


@contextlib.contextmanager
def reading(
    destination: str = "duckdb", on_notice: Optional[Callable[[str], None]] = None, restore_state: bool = True
) -> Iterator[dlt.Pipeline]:
    """The destination's pipeline to read what is loaded (`status`, `report`), writing nothing there.

    A DuckDB file must exist (`require_database`) and is opened read-only, so it may sit in a read-only place;
    a run writing it is waited for, saying so through `on_notice`, up to `taxi_pipeline.lock_timeout` (LoadError
    then, as a load gives up; `destinations.read_lock`). The pipeline's working folder is a scratch folder of its own,
    never a load's, so no run is waited for there; `restore_state`: dlt state is restored into it from the
    destination (months recorded there before the month records table). A destination that cannot be opened is
    configuration to fix (ConfigError, exit 2), naming the credentials setting.
    """
    require_database(destination)
    with scratch_folder() as folder:
        pipeline = make_pipeline(destination, folder=folder, read_only=True)
        with read_lock(pipeline, on_wait=on_notice):
            _connect(pipeline, restore_state)
            yield pipeline
