"""CI runs the README's test command verbatim, and that command lints and type-checks gatectl/
before the tests (a change that breaks either fails CI, not only the tests)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def readme_command() -> str:
    block = re.search(r"## Run the tests.*?```sh\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)
    assert block, "README: no 'Run the tests' command block"
    return block.group(1).strip()


def test_ci_runs_exactly_the_readme_command():
    lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert lines[-1].strip() == readme_command()


def test_the_command_lints_and_type_checks_gatectl_before_the_tests():
    steps = [s.strip() for s in readme_command().split("&&")]
    assert steps.index(".venv/bin/ruff check gatectl") < steps.index(".venv/bin/python -m pytest -q")
    assert steps.index(".venv/bin/mypy gatectl") < steps.index(".venv/bin/python -m pytest -q")
