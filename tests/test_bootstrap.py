"""scripts/bootstrap.sh installs only when something changed, and never twice at once.

Runs the real script in a scratch copy of the project files it reads, with a
stand-in for .venv/bin/python that records each pip call (a real install
takes most of a minute); the venv's console scripts are there as files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
STAND_IN = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/../pip-calls"
sleep "${PIP_SECONDS:-0}"
"""


def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "scripts" / "bootstrap.sh", root / "scripts")
    shutil.copy(REPO_ROOT / "pyproject.toml", root)
    venv = root / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text(STAND_IN)
    (venv / "python").chmod(0o755)
    for script in ("solstice", "ciadm", "cidev", "solstice-runner"):
        (venv / script).write_text("#!/bin/sh\n")
        (venv / script).chmod(0o755)
    return root


def calls(root: Path) -> list[str]:
    log = root / ".venv" / "pip-calls"
    return log.read_text().splitlines() if log.exists() else []


def bootstrap(root: Path, *args: str) -> None:
    subprocess.run(["bash", "scripts/bootstrap.sh", *args], cwd=root, check=True, timeout=60)


def test_installs_only_what_changed(tmp_path: Path) -> None:
    root = project(tmp_path)
    bootstrap(root, "test")
    assert calls(root) == ["-m pip install -q --disable-pip-version-check -e .[server,test]"]
    bootstrap(root, "test")
    bootstrap(root)  # the plain install is part of the one with the test extra
    assert len(calls(root)) == 1
    (root / "pyproject.toml").write_text((root / "pyproject.toml").read_text() + "\n# changed\n")
    bootstrap(root)
    assert calls(root)[1:] == ["-m pip install -q --disable-pip-version-check -e .[server]"]
    bootstrap(root, "test")  # the extra is not installed for the new pyproject.toml yet
    assert len(calls(root)) == 3
    (root / ".venv" / "bin" / "ciadm").unlink()  # a console script gone: install again
    bootstrap(root)
    assert len(calls(root)) == 4


def test_two_at_once_install_once(tmp_path: Path) -> None:
    root = project(tmp_path)
    env = {**os.environ, "PIP_SECONDS": "1"}
    both = [subprocess.Popen(["bash", "scripts/bootstrap.sh", "test"], cwd=root, env=env) for _ in range(2)]
    assert [p.wait(60) for p in both] == [0, 0]
    assert len(calls(root)) == 1  # the second waited for the first and found the venv up to date
