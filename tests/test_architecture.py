"""The house stays in order: no import cycles, layers that point down (`lint-imports`), modules a reader can hold."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "taxi_pipeline"
MAX_LINES = 400
REASON = "Longer than 400 lines:"
"""How a module's docstring says why it is longer (a line starting so)."""


def test_no_two_modules_import_each_other_through_any_chain():
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter, in the dev extra")
    graph = grimp.build_graph("taxi_pipeline")
    modules = sorted(m for m in graph.modules if m.startswith("taxi_pipeline."))
    cycles = [
        (a, b) for a, b in itertools.combinations(modules, 2) if graph.chain_exists(a, b) and graph.chain_exists(b, a)
    ]
    assert cycles == []


def test_the_layer_contracts_are_kept():
    command = Path(sys.executable).with_name("lint-imports")  # import-linter's command, beside this Python
    if not command.exists():
        pytest.skip("import-linter is in the dev extra: pip install -e '.[dev]'")
    done = subprocess.run([str(command)], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert done.returncode == 0 and "0 broken" in done.stdout, done.stdout + done.stderr


def test_no_module_is_longer_than_400_lines_without_saying_why():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        if len(lines) > MAX_LINES and not any(line.startswith(REASON) for line in lines[:40]):
            long.append(f"{path.relative_to(PACKAGE.parent)}: {len(lines)} lines")
    assert long == []
