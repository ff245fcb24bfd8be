"""dbt after the load: `dbt build` of the project in `dbt/` against the destination the pipeline just loaded.

The dbt profile (`dbt/profiles.yml`) reads dlt's split credential env vars (`DESTINATION__POSTGRES__CREDENTIALS__HOST`
…); here they are filled from the pipeline's resolved dlt configuration, so the same credentials serve both,
whichever way they were given (one URL, split vars, `.dlt/secrets.toml`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, TextIO

import dlt

from taxi_pipeline.errors import ConfigError, LoadError

_PACKAGE = Path(__file__).resolve().parent


def dbt_project_dir() -> Path:
    """The dbt project: `taxi_pipeline.dbt_project_dir` if configured, else the one shipped with the package."""
    configured = dlt.config.get("taxi_pipeline.dbt_project_dir")
    candidates = [Path(configured)] if configured else [_PACKAGE / "dbt_project", _PACKAGE.parent / "dbt"]
    for candidate in candidates:
        if (candidate / "dbt_project.yml").exists():
            return candidate
    raise ConfigError(f"no dbt project at {candidates[0]} (set taxi_pipeline.dbt_project_dir)")


def profile_env(pipeline: dlt.Pipeline) -> Dict[str, str]:
    """The env vars `dbt/profiles.yml` reads, from the pipeline's resolved destination credentials."""
    kind = pipeline.destination.destination_type.rsplit(".", 1)[-1]
    credentials = pipeline.destination_client().config.credentials  # type: ignore[attr-defined]
    env = {"DBT_TARGET": kind, "TAXI_PIPELINE__DATASET_NAME": pipeline.dataset_name}
    prefix = f"DESTINATION__{kind.upper()}__CREDENTIALS"
    if kind == "duckdb":
        env[prefix] = str(Path(credentials.database).resolve())
        return env
    fields = ["host", "port", "username", "password", "database"]
    if kind == "snowflake":
        fields += ["warehouse", "role", "private_key_path", "private_key_passphrase"]
    for name in fields:
        value = getattr(credentials, name, None)
        if value is not None:
            env[f"{prefix}__{name.upper()}"] = str(value)
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


def run_dbt(
    pipeline: dlt.Pipeline,
    command: str = "build",
    extra_args: Optional[List[str]] = None,
    output: Optional[TextIO] = None,
) -> DbtResult:
    """Run `dbt <command>` (default `build`: models and their tests) against the pipeline's destination.

    dbt runs in its own process (its global state and database handles stay out of ours); its output goes to
    our stdout, or to `output` when given (e.g. stderr when stdout carries JSON, a buffer to stay quiet), in
    colour only where that is a terminal. A failing model or test gives `success=False` with the nodes named
    (from `run_results.json`). dbt's target and logs stay in `dbt_work_dir(pipeline)` after the run.
    """
    require_dbt()
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
    args += extra_args or []
    sys.stdout.flush()
    if output is None:
        done = subprocess.run(args, env=env, stdin=subprocess.DEVNULL)
    else:
        done = subprocess.run(
            args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        output.write(done.stdout)
    if not results_file.exists():
        raise LoadError(f"dbt {command} could not run (exit {done.returncode}); see its output above")
    results = json.loads(results_file.read_text()).get("results", [])
    # unique ids are "model.<project>.<name>" and "test.<project>.<name>.<hash>"
    failures = [r["unique_id"].split(".")[2] for r in results if r.get("status") in ("error", "fail", "runtime error")]
    return DbtResult(done.returncode == 0 and not failures, failures)


def require_dbt() -> None:
    """Raise ConfigError (exit 2) naming the extra when dbt is not installed: checked before anything loads."""
    if importlib.util.find_spec("dbt") is None or importlib.util.find_spec("dbt.cli") is None:
        raise ConfigError("--dbt needs dbt: pip install 'taxi-pipeline[dbt]'")
