"""scripts/serve and scripts/test install into .venv only when pyproject.toml changed, so a
second start is quick and needs no package index.

Each test runs the real scripts in a copy of the repository's layout whose .venv holds
stand-ins for `python` and the installed commands: they record how they were called.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
STAND_IN = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$(dirname "$0")/../calls.log"
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    for script in ("serve", "test", "ensure-venv"):
        shutil.copy2(REPOSITORY / "scripts" / script, tmp_path / "scripts" / script)
    shutil.copy2(REPOSITORY / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for command in ("python", "hypereal", "ruff", "mypy", "pytest"):
        (bin_dir / command).write_text(STAND_IN)
        (bin_dir / command).chmod(0o755)
    return tmp_path


def run(checkout: Path, *command: str) -> list[str]:
    """Run a script of the checkout; the calls it made to the .venv's commands."""
    log = checkout / ".venv" / "calls.log"
    log.unlink(missing_ok=True)
    # Without CI's own pytest options, which scripts/test adds when CI=true.
    environ = {**{k: v for k, v in os.environ.items() if k != "CI"}, "PYTHON": sys.executable}
    subprocess.run([str(checkout / "scripts" / command[0]), *command[1:]], env=environ, check=True, timeout=60)
    return [line.strip() for line in log.read_text().splitlines()] if log.exists() else []


INSTALL_ALL = "python -m pip install --quiet --disable-pip-version-check -e .[all]"
INSTALL_DEV = "python -m pip install --quiet --disable-pip-version-check -e .[dev]"


def test_serve_installs_once_then_starts_without_pip(checkout: Path) -> None:
    assert run(checkout, "serve", "--port", "9000") == [INSTALL_ALL, "hypereal serve --port 9000"]
    assert run(checkout, "serve") == ["hypereal serve"]
    assert run(checkout, "serve") == ["hypereal serve"]


def test_a_changed_pyproject_installs_again(checkout: Path) -> None:
    run(checkout, "serve")
    with (checkout / "pyproject.toml").open("a") as file:
        file.write("\n# a new dependency\n")
    assert run(checkout, "serve") == [INSTALL_ALL, "hypereal serve"]
    assert run(checkout, "serve") == ["hypereal serve"]


def test_the_test_script_keeps_its_own_stamp_and_its_install_serves_both(checkout: Path) -> None:
    assert run(checkout, "test", "-x")[0] == INSTALL_DEV
    assert run(checkout, "test", "-x") == ["ruff check src tests bench", "mypy", "pytest -q -x"]
    assert run(checkout, "serve") == ["hypereal serve"]  # the dev extra includes everything serve needs
