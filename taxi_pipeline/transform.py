"""dbt after the load: `dbt build` of the project in `dbt/` against the destination the pipeline just loaded.

The dbt profile (`dbt/profiles.yml`) reads dlt's split credential env vars (`DESTINATION__POSTGRES__CREDENTIALS__HOST`
…); here they are filled from the pipeline's resolved dlt configuration, so the same credentials serve both,
whichever way they were given (one URL, split vars, `.dlt/secrets.toml`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, TextIO

import dlt
import yaml
from dlt.common import logger

from taxi_pipeline.errors import ConfigError, LoadError, one_line
from taxi_pipeline.records import ZONES_RECORD, built_versions, month_records, write_built, zones_record
from taxi_pipeline.schemas import TRIP_SCHEMAS, ZONES

_PACKAGE = Path(__file__).resolve().parent


def dbt_project_dir() -> Path:
    """The dbt project: `taxi_pipeline.dbt_project_dir` if configured, else the one shipped with the package."""
    configured = dlt.config.get("taxi_pipeline.dbt_project_dir")
    candidates = [Path(configured)] if configured else [_PACKAGE / "dbt_project", _PACKAGE.parent / "dbt"]
    for candidate in candidates:
        if (candidate / "dbt_project.yml").exists():
            return candidate
    raise ConfigError(f"no dbt project at {candidates[0]} (set taxi_pipeline.dbt_project_dir)")


DUCKDB_DBT_SETTINGS = {
    "dbt_memory_limit": (r"[0-9]+(\.[0-9]+)?\s*([KMGT]i?)?B", "a memory size such as 1GB or 512MB"),
    "dbt_threads": (r"[1-9][0-9]*", "a whole number, 1 or more"),
}
"""`taxi_pipeline.<key>` settings of a DuckDB build (DuckDB's `memory_limit`, `threads`; see dbt/profiles.yml): the
form of their values, and what the error of another value asks for."""


def profile_env(pipeline: dlt.Pipeline) -> Dict[str, str]:
    """The env vars `dbt/profiles.yml` reads, from the pipeline's resolved destination credentials."""
    kind = pipeline.destination.destination_type.rsplit(".", 1)[-1]
    config = pipeline.destination_client().config  # type: ignore[attr-defined]
    credentials = config.credentials
    env = {"DBT_TARGET": kind, "TAXI_PIPELINE__DATASET_NAME": pipeline.dataset_name}
    prefix = f"DESTINATION__{kind.upper()}__CREDENTIALS"
    if kind == "duckdb":
        env[prefix] = str(Path(credentials.database).resolve())
        for key, (form, wanted) in DUCKDB_DBT_SETTINGS.items():  # from .dlt/config.toml too, not only env vars
            value = dlt.config.get(f"taxi_pipeline.{key}")
            if value is None:
                continue
            if not re.fullmatch(form, str(value).strip(), re.IGNORECASE):
                raise ConfigError(f"taxi_pipeline.{key} is {value!r}: give {wanted}")
            env[f"TAXI_PIPELINE__{key.upper()}"] = str(value).strip()
        return env
    if kind == "bigquery":
        return {**env, **_bigquery_env(pipeline, config)}
    fields = ["host", "port", "username", "password", "database"]
    if kind == "snowflake":
        fields += ["warehouse", "role", "private_key_path", "private_key_passphrase"]
    for name in fields:
        value = getattr(credentials, name, None)
        if value is not None:
            env[f"{prefix}__{name.upper()}"] = str(value)
    return env


BIGQUERY_KEYFILE_ENV = "TAXI_DBT_BIGQUERY_KEYFILE"
"""The service-account key file of dbt's BigQuery target (dbt/profiles.yml); unset: Application Default Credentials."""


def _bigquery_env(pipeline: dlt.Pipeline, config: Any) -> Dict[str, str]:
    """The BigQuery target's env vars: project, location, and a key file when dlt's credentials carry a key.

    dlt resolves BigQuery credentials to a service-account key (its fields or JSON) or, failing that, to Application
    Default Credentials, which dbt's `oauth` method finds the same way. A key is written for dbt (mode 0600) into
    `dbt_work_dir(pipeline)`. OAuth refresh-token credentials are not passed on: dbt uses ADC then.
    """
    credentials = config.credentials
    env = {"DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID": str(credentials.project_id or "")}
    if getattr(config, "location", None):
        env["DESTINATION__BIGQUERY__LOCATION"] = str(config.location)
    uses_default = getattr(credentials, "has_default_credentials", lambda: False)()
    key = getattr(credentials, "private_key", None)
    if not uses_default and isinstance(key, str) and key:
        keyfile = dbt_work_dir(pipeline) / "bigquery-key.json"
        keyfile.parent.mkdir(parents=True, exist_ok=True)
        fields = ["project_id", "private_key", "private_key_id", "client_email", "token_uri"]
        info = {"type": "service_account", **{name: getattr(credentials, name, None) for name in fields}}
        fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        os.chmod(keyfile, 0o600)  # a file written earlier under another mode
        env[BIGQUERY_KEYFILE_ENV] = str(keyfile)
    return env


@dataclass
class DbtResult:
    """The outcome of a dbt invocation: success, and the names of failed or errored nodes."""

    success: bool
    failures: List[str] = field(default_factory=list)


def dbt_work_dir(pipeline: dlt.Pipeline) -> Path:
    """Where dbt's target (compiled SQL, `run_results.json`) and logs of this pipeline's runs are kept.

    In the pipeline's own working folder (one per destination and dataset, under the run lock), and kept after
    the run: the compiled SQL dbt names in a failure can be opened, and dbt's partial parse is reused.
    """
    return Path(pipeline.working_dir) / "dbt"


# `python -m dbt.cli.main` warns (RuntimeWarning: found in sys.modules …) on every run: call dbt's entry point
_DBT_MAIN = "import sys; from dbt.cli.main import cli; sys.exit(cli(prog_name='dbt'))"


def _is_terminal(stream: Optional[TextIO]) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


DBT_SCHEMA_ENV = "TAXI_DBT_SCHEMA"
"""The schema dbt builds into (see dbt/profiles.yml); `taxi` unless set."""
CHANGED_MONTHS_VAR = "taxi_changed_months"
"""The dbt var naming the months to rebuild: raw table → [`YYYY-MM`, …] (see dbt/macros/changed_months.sql)."""


MODELS_RECORD = ("taxi_models", "-")
"""Where a build's models version is recorded among what it built (table, month): beside the raw tables' months."""
MODELS_VERSION_VAR = "taxi_models_version"
"""The var of `dbt_project.yml` holding the models' version (see there)."""


def models_version(project: Optional[Path] = None) -> Optional[str]:
    """The version of the dbt project's models (`vars.taxi_models_version`), None if the project has none."""
    path = (project or dbt_project_dir()) / "dbt_project.yml"
    version = (yaml.safe_load(path.read_text()) or {}).get("vars", {}).get(MODELS_VERSION_VAR)
    return None if version is None else str(version)


def models_changed(built: Mapping[str, Mapping[str, str]], version: Optional[str]) -> Optional[str]:
    """The version the last build's models had ("none recorded" before versions were), if not `version`; else None."""
    table, month = MODELS_RECORD
    recorded = built.get(table, {}).get(month)
    if version is None or recorded == version:
        return None
    return recorded or "none recorded"


def entry_version(entry: Mapping[str, Any]) -> str:
    """A short digest of a month's state entry: it changes whenever the month is loaded or replaced again."""
    return hashlib.sha1(json.dumps(entry, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dbt_schema() -> str:
    """The schema dbt builds into: `TAXI_DBT_SCHEMA`, else `taxi`."""
    return os.environ.get(DBT_SCHEMA_ENV) or "taxi"


def changed_months(
    pipeline: dlt.Pipeline, built: Optional[Mapping[str, Mapping[str, str]]] = None
) -> Dict[str, List[str]]:
    """Every raw trip table → its months loaded or replaced since the last successful dbt build, sorted.

    Builds are told apart by the schema they go into (`dbt_schema`): a second dbt schema fed from the same raw
    tables has its own record. `built`: that record, where the caller has read it (`built_versions`).
    """
    built = built_versions(pipeline, dbt_schema()) if built is None else built
    changed = {}
    for schema in TRIP_SCHEMAS.values():
        done = built.get(schema.table, {})
        entries = month_records(pipeline, schema.table)
        changed[schema.table] = sorted(m for m, e in entries.items() if done.get(m) != entry_version(e))
    return changed


def zones_changed(pipeline: dlt.Pipeline, built: Optional[Mapping[str, Mapping[str, str]]] = None) -> bool:
    """Whether the zone lookup was loaded or replaced since the last successful build into `dbt_schema()`.

    Every month's fact rows carry zone names and depend on which ids are zones, so a new zone lookup (or a
    schema with no build recorded) means a full build. `built`: as for `changed_months`.
    """
    entry = zones_record(pipeline)
    built = built_versions(pipeline, dbt_schema()) if built is None else built
    return entry is not None and built.get(ZONES.table, {}).get(ZONES_RECORD) != entry_version(entry)


def loaded_months(pipeline: dlt.Pipeline) -> Dict[str, List[str]]:
    """Every raw trip table → all its loaded months, sorted (what a full build reads)."""
    return {s.table: sorted(month_records(pipeline, s.table)) for s in TRIP_SCHEMAS.values()}


def describe_months(changed: Mapping[str, List[str]]) -> str:
    """`green_tripdata 2019-01, 2019-02; yellow_tripdata 2019-02` (`no month` when empty)."""
    parts = [f"{table} {', '.join(months)}" for table, months in changed.items() if months]
    return "; ".join(parts) or "no month"


def build_changed(
    pipeline: dlt.Pipeline,
    output: Optional[TextIO] = None,
    full_refresh: bool = False,
    on_notice: Optional[Callable[[str], None]] = None,
) -> Optional[DbtResult]:
    """`dbt build` of the months loaded or replaced since the last successful build, or of every month.

    The changed months go to dbt as `taxi_changed_months`: the incremental models delete and insert only those
    months and the tests check only those months (the first build, into a schema without the models, builds
    everything all the same). `full_refresh`: `dbt build --full-refresh`, every month read and checked; a zone
    lookup loaded or replaced since the last build, models of another version than the last build's
    (`models_version`: their keys or columns changed), or no build recorded for the schema make it one too. After a
    successful build the months it read are recorded (`records.write_built`), so the next build skips them; after
    a failed one they stay changed and the next build takes them again. With nothing changed (no month, not the
    zone lookup) and no `full_refresh`, no build: None, and a note (a scheduled run with nothing new stays a
    matter of seconds). The one decision of `--dbt` after a load and of `taxi-pipeline dbt`.
    """
    schema = dbt_schema()
    built = built_versions(pipeline, schema)  # read once for the checks below
    version = models_version()
    if full_refresh:
        what = "every month"
    elif not built:
        full_refresh, what = True, f"every month (no build into schema {schema} recorded yet)"
    elif zones_changed(pipeline, built):  # zone names and exclusions of every month: a full build
        full_refresh, what = True, "every month (the zone lookup is new since the last build)"
    elif (before := models_changed(built, version)) is not None:  # new keys or columns: every month
        full_refresh, what = True, f"every month (the models are version {version}, the last build's: {before})"
    changed = loaded_months(pipeline) if full_refresh else changed_months(pipeline, built)
    if not full_refresh and not any(changed.values()):
        if on_notice:
            on_notice("dbt build skipped: no month changed since the last dbt build")
        return None
    if not full_refresh:
        what = f"the months changed since the last build: {describe_months(changed)}"
    if on_notice:
        on_notice(f"dbt build of {what}")
    extra = ["--full-refresh"] if full_refresh else []
    result = run_dbt(pipeline, output=output, changed=None if full_refresh else changed, extra_args=extra)
    if result.success:
        try:
            record_built(pipeline, changed)
        except Exception as exc:  # the next build only rebuilds these months again (delete and insert by month)
            logger.warning(f"dbt build not recorded ({one_line(exc)}): its months will be built again next time")
    return result


def record_built(pipeline: dlt.Pipeline, months: Mapping[str, List[str]]) -> None:
    """Record that dbt has built `months` (raw table → months) and the zone lookup as they are now.

    In the records' dataset, a row per month (`records.write_built`), not in dlt state: a run that stores state
    after a build by another run cannot lose it.
    """
    versions: Dict[str, Dict[str, str]] = {}
    for table, listed in months.items():
        entries = month_records(pipeline, table)
        versions[table] = {m: entry_version(entries[m]) for m in listed if m in entries}
    zones = zones_record(pipeline)
    if zones is not None:
        versions[ZONES.table] = {ZONES_RECORD: entry_version(zones)}
    version = models_version()
    if version is not None:
        versions[MODELS_RECORD[0]] = {MODELS_RECORD[1]: version}
    write_built(pipeline, dbt_schema(), versions)


def run_dbt(
    pipeline: dlt.Pipeline,
    command: str = "build",
    extra_args: Optional[List[str]] = None,
    output: Optional[TextIO] = None,
    changed: Optional[Mapping[str, List[str]]] = None,
) -> DbtResult:
    """Run `dbt <command>` (default `build`: models and their tests) against the pipeline's destination.

    dbt runs in its own process (its global state and database handles stay out of ours); its output goes to
    our stdout, or to `output` when given (e.g. stderr when stdout carries JSON, a buffer to stay quiet), in
    colour only where that is a terminal. A failing model or test gives `success=False` with the nodes named
    (from `run_results.json`). dbt's target and logs stay in `dbt_work_dir(pipeline)` after the run.
    `changed`: raw table → months, passed as `taxi_changed_months` (None: every month).
    """
    require_dbt("the dbt build")
    project = dbt_project_dir()
    work = dbt_work_dir(pipeline)
    target, logs = work / "target", work / "logs"
    target.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    results_file = target / "run_results.json"
    results_file.unlink(missing_ok=True)  # an earlier run's results must never pass for this run's
    env = {**os.environ, **profile_env(pipeline)}
    args = [sys.executable, "-c", _DBT_MAIN, command, "--project-dir", str(project), "--profiles-dir", str(project)]
    args += ["--target", env["DBT_TARGET"], "--target-path", str(target), "--log-path", str(logs)]
    # dbt colours its output wherever it goes: plain text into files and pipes, and (as far as dbt lets us) its log
    to_terminal = _is_terminal(output) if output is not None else _is_terminal(sys.stdout) and os.isatty(1)
    args += ["--no-use-colors-file"] + ([] if to_terminal else ["--no-use-colors"])
    args += dbt_vars(changed) + (extra_args or [])
    sys.stdout.flush()
    returncode = _run_passing_output(args, env, output)
    if not results_file.exists():
        raise LoadError(f"dbt {command} could not run (exit {returncode}); see its output above")
    results = json.loads(results_file.read_text()).get("results", [])
    # unique ids are "model.<project>.<name>" and "test.<project>.<name>.<hash>"
    failures = [r["unique_id"].split(".")[2] for r in results if r.get("status") in ("error", "fail", "runtime error")]
    return DbtResult(returncode == 0 and not failures, failures)


def _run_passing_output(args: List[str], env: Mapping[str, str], output: Optional[TextIO]) -> int:
    """Run a command, its output passed on line by line to `output` (with its stderr) or to our stdout; its exit code.

    Through our own streams, never our descriptors: a reader of our stdout that has gone away (`| head`) stops
    the output (the CLI's streams drop it), not the command, which would otherwise meet the closed pipe itself.
    The command is killed when we are stopped (Ctrl-C, SIGTERM) while it runs.
    """
    stream = output if output is not None else sys.stdout
    stderr = subprocess.STDOUT if output is not None else None
    proc = subprocess.Popen(
        args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1
    )
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            stream.write(line)
            if output is None:  # live, as dbt writes it
                stream.flush()
        return proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()  # type: ignore[union-attr]


def dbt_vars(changed: Optional[Mapping[str, List[str]]]) -> List[str]:
    """The `--vars` argument of dbt for the changed months (none for every month)."""
    return [] if changed is None else ["--vars", json.dumps({CHANGED_MONTHS_VAR: dict(changed)})]


def require_dbt(needed_by: str = "--dbt") -> None:
    """Raise ConfigError (exit 2) naming the extra when dbt is not installed: checked before anything loads.

    `needed_by`: what the user asked for that needs dbt (the option `--dbt`, the `dbt` command), named in the error.
    """
    if importlib.util.find_spec("dbt") is None or importlib.util.find_spec("dbt.cli") is None:
        raise ConfigError(f"{needed_by} needs dbt: pip install 'taxi-pipeline[dbt]'")
