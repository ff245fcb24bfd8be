"""Kestra flows, validated offline (no Kestra server can run here): structure, plugin types, inputs, templates,
and every command line, rendered for sample dates, parsed by the package's own argument parser."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest
import yaml

from taxi_pipeline.cli import parse_command_line
from taxi_pipeline.errors import ConfigError
from tests.pebble import render

FLOWS = sorted((Path(__file__).resolve().parents[1] / "flows").glob("*.yml"))

PLUGIN_TYPES = {  # real Kestra plugin types valid in 1.x and 2.0 (FACTS.md; plugin docs)
    "io.kestra.plugin.core.trigger.Schedule",
    "io.kestra.plugin.scripts.python.Commands",
    "io.kestra.plugin.scripts.python.Script",
    "io.kestra.plugin.scripts.shell.Commands",
    "io.kestra.plugin.dbt.cli.DbtCLI",
    "io.kestra.plugin.core.log.Log",
    "io.kestra.plugin.core.runner.Process",
    "io.kestra.plugin.core.flow.WorkingDirectory",
    "io.kestra.plugin.core.flow.Subflow",
    "io.kestra.plugin.core.execution.Labels",
    "io.kestra.plugin.scripts.runner.docker.Docker",
}
PACKAGE = "/opt/wheels/taxi_pipeline-0.1.0-py3-none-any.whl[postgres,snowflake,bigquery,dbt]"  # a user's setting
RETRY_TYPES = {"constant", "exponential", "random"}  # a task's `retry.type`
INPUT_TYPES = {"STRING", "INT", "FLOAT", "BOOLEAN", "BOOL", "SELECT", "MULTISELECT", "DATE", "DATETIME", "ENUM"}
FORBIDDEN_KEYS = {"pluginDefaults", "runIf", "conditions"}  # Kestra 2.0 rejects them / renamed to `when`
ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")
NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def walk(node: Any, path: str = "") -> Iterator[Tuple[str, Any, Any]]:
    """(path, key, value) for every mapping entry in the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from walk(item, f"{path}[{i}]")


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


SLOTS = [dt.datetime(2025, 1, 1, 7), dt.datetime(2024, 7, 1, 7), dt.datetime(2026, 3, 14, 7)]


def _choices(i: dict) -> list:
    """The values an input takes in the rendered contexts: each SELECT value, both booleans, for a MULTISELECT
    its default and every value at once, otherwise the default."""
    if i["type"] == "SELECT":
        return i["values"]
    if i["type"] == "BOOLEAN":
        return [True, False]
    if i["type"] == "MULTISELECT":
        return [i["defaults"], i["values"]]
    if i["id"] == "month":  # empty: the slot's month (a manual run stops); or the month given
        return [i["defaults"], "2019-03"]
    return [i.get("defaults")]


def contexts(flow: dict) -> Iterator[dict]:
    """Render contexts: a scheduled slot on several dates (a year boundary among them) and a manual run, for each
    combination of input values."""
    inputs = flow.get("inputs", [])
    choices = [_choices(i) for i in inputs]
    runs: List[dict] = [{"trigger": {"date": d}} for d in SLOTS]
    runs.append({})  # manual run: no trigger
    for combo in itertools.product(*choices):
        for run in runs:
            ctx = {
                "inputs": {i["id"]: v for i, v in zip(inputs, combo, strict=True)},
                "vars": {**flow.get("variables", {}), "package": PACKAGE},
            }
            ctx["execution"] = {"startDate": dt.datetime(2024, 5, 17, 8, 30)}
            ctx.update(run)
            yield ctx


@pytest.fixture(params=FLOWS, ids=lambda p: p.name)
def flow(request) -> dict:
    return load(request.param)


def flow_named(name: str) -> dict:
    return load(FLOWS[[p.name for p in FLOWS].index(f"{name}.yml")])


def test_there_are_flows():
    assert {p.name for p in FLOWS} == {"taxi_catchup.yml", "taxi_backfill.yml", "taxi_dbt.yml", "taxi_month.yml"}


def test_ids_and_namespace(flow):
    assert ID.match(flow["id"]) and NAMESPACE.match(flow["namespace"])
    task_ids = [t["id"] for t in flow["tasks"]] + [t["id"] for t in flow.get("triggers", [])]
    assert len(task_ids) == len(set(task_ids)) and all(ID.match(i) for i in task_ids)


def test_plugin_types_are_real_and_no_forbidden_keys(flow):
    for path, key, value in walk(flow):
        assert key not in FORBIDDEN_KEYS, f"{key} at {path}"
        if key == "type":
            if path.startswith(".inputs"):
                assert value in INPUT_TYPES, f"input type {value} at {path}"
            elif path.endswith(".retry"):
                assert value in RETRY_TYPES, f"retry type {value} at {path}"
            else:
                assert value in PLUGIN_TYPES, f"unknown plugin type {value} at {path}"


def test_select_defaults_and_trigger_inputs_are_allowed_values(flow):
    inputs = {i["id"]: i for i in flow.get("inputs", [])}
    for i in inputs.values():
        if i["type"] == "SELECT":
            assert i["defaults"] in i["values"]
        if i["type"] == "MULTISELECT":
            assert i["defaults"] and set(i["defaults"]) <= set(i["values"])
    for trigger in flow.get("triggers", []):
        for key, value in (trigger.get("inputs") or {}).items():
            assert key in inputs and value in inputs[key]["values"], (trigger["id"], key, value)


def test_templates_are_balanced(flow):
    for text in strings(flow):
        assert text.count("{{") == text.count("}}"), text
        assert "{%" not in text, "keep flows to expressions; logic belongs in the package"


def test_secrets_only_through_secret_function(flow):
    for path, key, value in walk(flow):
        if isinstance(value, str) and re.search(r"CREDENTIALS|PASSWORD|TOKEN", str(key)) and "DUCKDB" not in str(key):
            assert "secret('" in value, f"{key} at {path} must come from secret()"


def cli_argv(line: str, ctx: dict, secrets: List[str] | None = None) -> List[str]:
    """A command line rendered in `ctx` and split like the shell, up to its first `||`, `&&`, `|` or `;`."""
    argv = shlex.split(render(line, ctx, secrets))
    ends = [i for i, word in enumerate(argv) if word in ("||", "&&", "|", ";")]
    return argv[: ends[0]] if ends else argv


def load_command(flow: dict, ctx: dict) -> Tuple[str, Any]:
    """The flow's `python -m taxi_pipeline` load command rendered in `ctx`: (text, parsed args)."""
    (line,) = [c for t in flow["tasks"] for c in t.get("commands", []) if c.startswith("python -m taxi_pipeline")]
    argv = cli_argv(line, ctx)
    command, args = parse_command_line(argv[3:])
    assert command == "load", argv
    return " ".join(argv), args


def task_named(flow: dict, task_id: str) -> dict:
    (task,) = [t for t in flow["tasks"] if t["id"] == task_id]
    return task


def run_task(task: dict, ctx: dict, tmp_path: Path, commands: bool = True) -> subprocess.CompletedProcess:
    """Run a script task's commands as Kestra's Process runner does: `set -e`, the beforeCommands and (unless
    `commands` is False) the commands, rendered in `ctx`, joined by newlines into one `/bin/sh -c`, with the task's
    env. `pip` is a stand-in that records its arguments in `tmp_path/pip.log` (nothing is installed here); `python`
    is this test's interpreter, where the package is installed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    pip = bin_dir / "pip"
    pip.write_text(f'#!/bin/sh\necho "$*" >> "{tmp_path / "pip.log"}"\n')
    pip.chmod(0o755)
    lines = task.get("beforeCommands", []) + (task["commands"] if commands else [])
    script = "\n".join(["set -e"] + [render(line, ctx) for line in lines])
    env = {**os.environ, **{k: render(str(v), ctx) for k, v in (task.get("env") or {}).items()}}
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env["PATH"]])
    return subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=300)


def kestra_outputs(stdout: str) -> dict:
    """The outputs Kestra takes from a script's `::{"outputs": …}::` lines (later lines' keys win)."""
    outputs: dict = {}
    for line in stdout.splitlines():
        m = re.fullmatch(r"::(\{.*\})::", line)
        if m:
            outputs.update(json.loads(m.group(1)).get("outputs") or {})
    return outputs


def test_the_scheduled_flow_runs_daily_in_utc_one_at_a_time():
    flow = flow_named("taxi_catchup")
    (daily,) = flow["triggers"]
    assert daily["type"] == "io.kestra.plugin.core.trigger.Schedule" and daily.get("timezone") == "UTC"
    minute, hour, day, month, weekday = daily["cron"].split()
    assert (day, month, weekday) == ("*", "*", "*"), "daily: a month lands within a day of its publication"
    assert flow["concurrency"]["limit"] == 1
    taxi = next(i for i in flow["inputs"] if i["id"] == "taxi")
    assert taxi["type"] == "MULTISELECT" and taxi["values"] == ["yellow", "green", "fhv", "fhvhv"]


def test_every_scheduled_slot_runs_the_same_catch_up_on_the_live_parquet_feed():
    """Not a month computed from the slot: an open-ended run from `start`, whatever the date, parquet by default."""
    flow = flow_named("taxi_catchup")
    defaults = {i["id"]: i.get("defaults") for i in flow["inputs"]}
    base = {"inputs": defaults, "vars": flow["variables"], "execution": {"startDate": dt.datetime(2024, 5, 17)}}
    rendered = {load_command(flow, {**base, "trigger": {"date": slot}})[0] for slot in SLOTS}
    rendered.add(load_command(flow, base)[0])  # a manual run
    assert len(rendered) == 1, rendered
    _, args = load_command(flow, base)
    assert (args.month, args.end, args.start) == (None, None, "2019-01"), "a catch-up: every month from start on"
    assert args.file_format == "parquet" and args.taxi == "yellow,green" and args.kestra
    assert "trigger" not in str(flow["tasks"]), "nothing in the flow depends on the slot's date"


def test_the_backfill_flow_loads_its_range_in_one_run():
    flow = flow_named("taxi_backfill")
    assert not flow.get("triggers"), "run by hand (or by the API) with a range"
    inputs = {i["id"]: i.get("defaults") for i in flow["inputs"]}
    inputs.update(taxi=["yellow", "green", "fhv", "fhvhv"], start="2011-01", end="2026-09", format="parquet")
    _, args = load_command(flow, {"inputs": inputs, "vars": flow["variables"]})
    assert (args.start, args.end, args.month) == ("2011-01", "2026-09", None)
    assert args.taxi == "yellow,green,fhv,fhvhv" and args.file_format == "parquet"
    course = {**inputs, "taxi": ["green"], "start": "2019-01", "end": "2021-07", "format": "csv"}
    _, args = load_command(flow, {"inputs": course, "vars": flow["variables"]})
    assert (args.start, args.end, args.file_format) == ("2019-01", "2021-07", "csv")


def test_every_command_line_parses_with_the_package_parser(flow):
    checked = 0
    for ctx in contexts(flow):
        if "month" in ctx["inputs"] and expected_months(ctx) is None:
            continue  # a manual taxi_month run without a month stops before its load (test below)
        for task in flow["tasks"]:
            for line in task.get("commands", []):
                secrets: List[str] = []
                argv = cli_argv(line, ctx, secrets)
                if argv[:3] != ["python", "-m", "taxi_pipeline"]:
                    continue
                command, args = parse_command_line(argv[3:])
                assert args.dest == ctx["inputs"]["dest"]
                if command == "load":
                    assert args.taxi == ",".join(ctx["inputs"]["taxi"])
                    assert (args.month, args.start, args.end) == expected_months(ctx)
                    assert args.file_format == ctx["inputs"]["format"]
                    assert args.dbt == ctx["inputs"].get("dbt", False)
                    assert args.workers == ctx["inputs"].get("workers")
                    assert args.kestra, "loads under Kestra report their summary as task outputs and metrics"
                checked += 1
            for key, value in (task.get("env") or {}).items():
                secrets = []
                rendered = render(str(value), ctx, secrets)
                dest = ctx["inputs"]["dest"]
                if key.startswith("DESTINATION__FILESYSTEM__"):  # BigQuery's staging bucket
                    secret = key.endswith("__CREDENTIALS") and dest == "bigquery"
                    assert rendered.startswith("<secret:") if secret else "<secret:" not in rendered, (key, rendered)
                elif key.startswith("DESTINATION__") and dest.upper() not in key:
                    assert rendered == "" or "DUCKDB" in key, (key, rendered)  # other secrets are not read
                elif key.startswith("DESTINATION__") and dest != "duckdb":
                    assert rendered.startswith("<secret:"), (key, rendered)
    assert checked, "no taxi_pipeline command line found"


def expected_months(ctx: dict) -> Any:
    """(--month, --start, --end) a flow's load command is to carry in `ctx`: a per-month flow's month is its
    `month` input, else its slot's month (None for a manual run without a month: it loads nothing); the others
    take start and end."""
    inputs = ctx["inputs"]
    if "month" not in inputs:
        return None, inputs["start"], inputs.get("end")
    if inputs["month"]:
        return inputs["month"], None, None
    slot = ctx.get("trigger", {}).get("date")
    return (slot.strftime("%Y-%m"), None, None) if slot else None


def test_the_month_flow_fans_a_backfill_out_one_execution_per_month():
    """UI backfill slots of its monthly trigger, one per month, run under a concurrency limit above 1; each loads
    the month of its slot (a year boundary too); a manual run loads the month it is given."""
    flow = flow_named("taxi_month")
    assert flow["concurrency"]["limit"] > 1 and flow["concurrency"].get("behavior", "QUEUE") == "QUEUE"
    (monthly,) = flow["triggers"]
    assert monthly["type"] == "io.kestra.plugin.core.trigger.Schedule" and monthly.get("timezone") == "UTC"
    assert not monthly.get("disabled"), "a disabled trigger cannot be backfilled"
    minute, hour, day, month, weekday = monthly["cron"].split()
    assert (day, month, weekday) == ("1", "*", "*"), "one slot per month"
    inputs = {i["id"]: i.get("defaults") for i in flow["inputs"]}
    variables = {**flow["variables"], "package": PACKAGE}
    base = {"inputs": inputs, "vars": variables, "execution": {"startDate": dt.datetime(2026, 12, 2, 9)}}
    slots = [dt.datetime(2019 + m // 12, m % 12 + 1, 1, 7) for m in range(11, 27)]  # 2019-12 … 2021-03
    months = []
    for slot in slots:
        text, args = load_command(flow, {**base, "trigger": {"date": slot}})
        labels = render(task_named(flow, "labels")["labels"]["month"], {**base, "trigger": {"date": slot}})
        assert (args.start, args.end, labels) == (None, None, args.month), text
        months.append(args.month)
    assert months == [f"{s.year}-{s.month:02d}" for s in slots]
    _, args = load_command(flow, {**base, "inputs": {**inputs, "month": "2011-02"}})
    assert args.month == "2011-02"
    assert args.dest == "postgres" and args.kestra and task_named(flow, "load")["retry"]["maxAttempts"] > 1


def test_the_backfill_flow_spreads_its_months_over_worker_processes():
    flow = flow_named("taxi_backfill")
    inputs = {i["id"]: i.get("defaults") for i in flow["inputs"]}
    assert inputs["workers"] == 1
    assert next(i for i in flow["inputs"] if i["id"] == "workers")["min"] == 1  # Kestra refuses 0 before a run
    _, args = load_command(flow, {"inputs": {**inputs, "workers": 3}, "vars": flow["variables"]})
    assert args.workers == 3


def test_free_text_inputs_are_validated_before_they_reach_a_shell(flow):
    for i in flow.get("inputs", []):
        if i["type"] == "STRING":
            assert re.fullmatch(i["validator"], i["defaults"]), i
            assert not re.fullmatch(i["validator"], "2019-01; rm -rf ~"), i


def test_empty_inputs_are_errors_not_defaults(flow):
    """An input left empty is refused (Kestra: required, validator) or makes the command exit 2, never a silent
    default or a catch-up; taxi_month's `month` alone may be empty (a slot's month; a manual run stops, above)."""
    inputs = {i["id"]: i for i in flow.get("inputs", [])}
    for i in inputs.values():
        if i["type"] == "STRING" and (flow["id"], i["id"]) != ("taxi_month", "month"):
            assert i.get("required", True) and not re.fullmatch(i["validator"], ""), i
    if "taxi" in inputs:
        values = {k: "2019-03" if k == "month" else i.get("defaults") for k, i in inputs.items()}
        ctx = {"inputs": {**values, "taxi": []}, "vars": {**flow["variables"], "package": PACKAGE}}
        with pytest.raises(ConfigError) as error:
            load_command(flow, ctx)
        assert error.value.exit_code == 2 and "--taxi" in str(error.value)


def install_steps(flow: dict, ctx: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a flow's script tasks up to its package install (that task's beforeCommands only), stopping at the first
    that fails, as Kestra would; the last run."""
    for task in flow["tasks"]:
        if "commands" not in task:
            continue
        installs = any(line.startswith("pip install") for line in task.get("beforeCommands", []))
        result = run_task(task, ctx, tmp_path, commands=not installs)
        if installs or result.returncode:
            return result
    raise AssertionError("no task installs the package")


def test_an_unset_package_stops_the_run_before_pip_with_one_line(flow, tmp_path):
    """The package is not on PyPI: the default installs nothing (a name there could be anyone's) and says what to
    set; a set package is what pip installs."""
    inputs = {i["id"]: i.get("defaults") for i in flow.get("inputs", [])}
    if "month" in inputs:
        inputs["month"] = "2019-03"
    ctx = {"inputs": inputs, "vars": flow["variables"], "execution": {"startDate": dt.datetime(2024, 5, 17)}}
    result = install_steps(flow, ctx, tmp_path)
    assert result.returncode == 2, result
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: variables.package is empty: set it in this flow") and "not on PyPI" in line
    assert "git+https://github.com/OWNER/REPO@TAG" in line
    assert not (tmp_path / "pip.log").exists(), "nothing installed"
    result = install_steps(flow, {**ctx, "vars": {**flow["variables"], "package": PACKAGE}}, tmp_path)
    assert result.returncode == 0, result
    assert (tmp_path / "pip.log").read_text().split("\n")[0] == f"install --quiet {PACKAGE}"


def test_a_manual_month_run_without_a_month_stops_before_anything_is_installed(tmp_path):
    """The trigger's slots load their own month; a manual run loads the month it is given and, without one, fails
    at once (no install, no label, no retries) instead of loading the current month, which is never published."""
    flow = flow_named("taxi_month")
    assert flow["tasks"][0]["id"] == "check" and "retry" not in flow["tasks"][0]
    inputs = {i["id"]: i.get("defaults") for i in flow["inputs"]}
    base = {
        "inputs": inputs,
        "vars": {**flow["variables"], "package": PACKAGE},
        "execution": {"startDate": dt.datetime(2026, 12, 2, 9)},
    }
    check = task_named(flow, "check")
    result = run_task(check, base, tmp_path)
    assert result.returncode == 2, result
    assert result.stderr.splitlines() == [
        "error: a manual run of taxi_month loads one month: set its month input (YYYY-MM); taxi_catchup loads "
        "every published month not loaded yet, taxi_backfill a range"
    ]
    assert run_task(check, {**base, "inputs": {**inputs, "month": "2019-03"}}, tmp_path).returncode == 0
    assert run_task(check, {**base, "trigger": {"date": dt.datetime(2020, 1, 1, 7)}}, tmp_path).returncode == 0


def test_the_month_flow_retries_a_failed_load_but_not_bad_input(mirror, tmp_path, monkeypatch):
    """Kestra's `retry` cannot tell exit codes apart: the load task ends exit 1 (a download or load that can succeed
    later: retried), but turns exit 2 (bad input or configuration: would fail the same way) into output
    `bad_input`, and the next task, which has no retry, fails the execution with the error."""
    flow = flow_named("taxi_month")
    load, bad_input = task_named(flow, "load"), task_named(flow, "bad_input")
    assert load["retry"]["maxAttempts"] > 1 and "retry" not in bad_input
    assert [t["id"] for t in flow["tasks"]][-2:] == ["load", "bad_input"]
    monkeypatch.setenv("SOURCES__TAXI__BASE_URL", mirror.url)
    inputs = {"taxi": ["green"], "dest": "duckdb", "format": "parquet", "month": "2019-03"}
    variables = {**flow["variables"], "package": PACKAGE, "duckdb_path": str(tmp_path / "taxi.duckdb")}
    ctx = {"inputs": inputs, "vars": variables, "execution": {"startDate": dt.datetime(2026, 12, 2, 9)}}

    def run(ctx: dict) -> Tuple[int, dict, subprocess.CompletedProcess]:
        loaded = run_task(load, ctx, tmp_path)
        outputs = kestra_outputs(loaded.stdout)
        after = run_task(bad_input, {**ctx, "outputs": {"load": {"vars": outputs}}}, tmp_path)
        return loaded.returncode, outputs, after

    mirror.trips("green", "2019-03", 5, fmt="parquet")
    code, outputs, after = run(ctx)
    assert (code, outputs["files"]["green_tripdata 2019-03"], after.returncode) == (0, "loaded", 0), outputs

    mirror.fail("/trip-data/green_tripdata_2019-04.parquet", *([500] * 10))
    code, outputs, _ = run({**ctx, "inputs": {**inputs, "month": "2019-04"}})
    assert code == 1 and outputs["ok"] is False and "bad_input" not in outputs, outputs  # the task fails: retried

    missing = {**variables, "duckdb_path": str(tmp_path / "missing" / "taxi.duckdb")}
    code, outputs, after = run({**ctx, "vars": missing})
    assert code == 0 and outputs["bad_input"] is True, outputs  # the task ends: not retried
    assert after.returncode == 2, after
    assert after.stderr.splitlines() == [
        "error: cannot open the duckdb destination (check DESTINATION__DUCKDB__CREDENTIALS): no folder for the "
        f"DuckDB file {tmp_path / 'missing' / 'taxi.duckdb'} (exit 2: fix the input or configuration; not retried)"
    ]

    code, outputs, after = run({**ctx, "inputs": {**inputs, "taxi": []}})  # an argument error: ok false, its error
    assert (code, outputs["ok"], outputs["bad_input"], after.returncode) == (0, False, True, 2), after
    assert after.stderr.splitlines() == [
        "error: argument --taxi: expected one argument (see --help) (exit 2: fix the input or configuration; "
        "not retried)"
    ]


def flow_env(flow: dict, task: dict, ctx: dict, variables: dict, dest: str) -> dict:
    """A task's env rendered for `dest` with the flow's variables overridden by `variables`."""
    context = {**ctx, "inputs": {**ctx["inputs"], "dest": dest}, "vars": {**flow["variables"], **variables}}
    return {key: render(str(value), context, []) for key, value in task["env"].items()}


@pytest.mark.parametrize("name", ["taxi_catchup", "taxi_backfill", "taxi_month"])
def test_bigquery_loads_stage_in_the_flows_bucket_when_one_is_set(name):
    """The course's way: a BigQuery run's months go through `variables.gcs_bucket` with the service account's key;
    without a bucket they are uploaded from the worker; other destinations never get the key."""
    flow = flow_named(name)
    task = next(t for t in flow["tasks"] if "TAXI_PIPELINE__STAGING" in (t.get("env") or {}))
    ctx = next(c for c in contexts(flow) if c["inputs"]["dest"] == "bigquery")
    staged = flow_env(flow, task, ctx, {"gcs_bucket": "gs://taxi-bucket/dlt"}, "bigquery")
    assert staged["TAXI_PIPELINE__STAGING"] == "filesystem"
    assert staged["DESTINATION__FILESYSTEM__BUCKET_URL"] == "gs://taxi-bucket/dlt"
    assert staged["DESTINATION__FILESYSTEM__CREDENTIALS"] == "<secret:TAXI_GCP_SERVICE_ACCOUNT>"
    assert staged["DESTINATION__BIGQUERY__CREDENTIALS"] == "<secret:TAXI_GCP_SERVICE_ACCOUNT>"
    assert flow_env(flow, task, ctx, {"gcs_bucket": ""}, "bigquery")["TAXI_PIPELINE__STAGING"] == ""
    other = flow_env(flow, task, ctx, {"gcs_bucket": "gs://taxi-bucket/dlt"}, "postgres")
    assert other["TAXI_PIPELINE__STAGING"] == "" and other["DESTINATION__BIGQUERY__CREDENTIALS"] == ""
