"""Kestra flows, validated offline (no Kestra server can run here): structure, plugin types, inputs, templates,
and every command line, rendered for sample dates, parsed by the package's own argument parser."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import shlex
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest
import yaml

from taxi_pipeline.cli import parse_command_line
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


def contexts(flow: dict) -> Iterator[dict]:
    """Render contexts: every trigger (with its inputs) and a manual run, for each combination of SELECT/BOOL
    input values, on a January slot (year boundary) and a mid-year one."""
    inputs = flow.get("inputs", [])
    choices = [
        i["values"] if i["type"] == "SELECT" else [True, False] if i["type"] == "BOOLEAN" else [i.get("defaults")]
        for i in inputs
    ]
    runs: List[dict] = [{"trigger": {"date": d}} for d in (dt.datetime(2025, 1, 1, 9), dt.datetime(2024, 7, 1, 10))]
    runs.append({})  # manual run: no trigger
    for combo in itertools.product(*choices):
        for run in runs:
            ctx = {
                "inputs": {i["id"]: v for i, v in zip(inputs, combo, strict=True)},
                "vars": flow.get("variables", {}),
            }
            ctx["execution"] = {"startDate": dt.datetime(2024, 5, 17, 8, 30)}
            ctx.update(run)
            yield ctx


@pytest.fixture(params=FLOWS, ids=lambda p: p.name)
def flow(request) -> dict:
    return load(request.param)


def test_there_are_flows():
    assert {p.name for p in FLOWS} >= {"taxi_monthly.yml", "taxi_dbt.yml"}


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
            else:
                assert value in PLUGIN_TYPES, f"unknown plugin type {value} at {path}"


def test_select_defaults_and_trigger_inputs_are_allowed_values(flow):
    inputs = {i["id"]: i for i in flow.get("inputs", [])}
    for i in inputs.values():
        if i["type"] == "SELECT":
            assert i["defaults"] in i["values"]
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


def test_schedules_are_monthly_utc_and_carry_a_taxi():
    flow = load(FLOWS[[p.name for p in FLOWS].index("taxi_monthly.yml")])
    schedules = {t["inputs"]["taxi"]: t for t in flow["triggers"]}
    assert set(schedules) == set(next(i for i in flow["inputs"] if i["id"] == "taxi")["values"])
    for t in schedules.values():
        assert t["type"] == "io.kestra.plugin.core.trigger.Schedule" and t.get("timezone") == "UTC"
        minute, hour, day, month, weekday = t["cron"].split()
        assert (day, month, weekday) == ("1", "*", "*")
    assert schedules["green"]["cron"] != schedules["yellow"]["cron"]
    assert flow["concurrency"]["limit"] == 1


@pytest.mark.parametrize(
    "trigger_date, expected",
    [(dt.datetime(2024, 3, 1, 9), "2024-02"), (dt.datetime(2025, 1, 1, 9), "2024-12"), (None, "2024-04")],
)
def test_scheduled_month_is_the_previous_complete_month(trigger_date, expected):
    flow = load(FLOWS[[p.name for p in FLOWS].index("taxi_monthly.yml")])
    ctx = {"execution": {"startDate": dt.datetime(2024, 5, 17)}}
    if trigger_date:
        ctx["trigger"] = {"date": trigger_date}
    assert render(flow["variables"]["month"], ctx) == expected


def test_every_command_line_parses_with_the_package_parser(flow):
    checked = 0
    for ctx in contexts(flow):
        for task in flow["tasks"]:
            for line in task.get("commands", []):
                secrets: List[str] = []
                argv = shlex.split(render(line, ctx, secrets))
                if argv[:3] != ["python", "-m", "taxi_pipeline"]:
                    continue
                command, args = parse_command_line(argv[3:])
                assert args.dest == ctx["inputs"]["dest"]
                if command == "load":
                    assert args.taxi == ctx["inputs"]["taxi"]
                    assert re.fullmatch(r"\d{4}-\d{2}", args.month)
                    assert args.dbt == ctx["inputs"]["dbt"]
                    assert args.kestra, "loads under Kestra report their summary as task outputs and metrics"
                checked += 1
            for key, value in (task.get("env") or {}).items():
                secrets = []
                rendered = render(str(value), ctx, secrets)
                dest = ctx["inputs"]["dest"]
                if key.startswith("DESTINATION__") and dest.upper() not in key:
                    assert rendered == "" or "DUCKDB" in key, (key, rendered)  # other secrets are not read
                elif key.startswith("DESTINATION__") and dest != "duckdb":
                    assert rendered.startswith("<secret:"), (key, rendered)
    assert checked, "no taxi_pipeline command line found"
