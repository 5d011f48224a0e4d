"""Every example passes with ``cidev run`` (``failing`` fails as it says), in the repository ``cidev init`` makes.

The examples' steps run for real: examples/rust needs cargo with rustfmt and
clippy, which scripts/ensure-tools.sh installs before the suite runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cidev.init_example import example_names

BIN = Path(sys.executable).parent
# Example -> (exit status, arguments of `cidev run`, the last line it prints).
EXPECTED = {
    "failing": (1, (), "1 of 1 jobs did not succeed"),
    "pipeline": (0, ("--secret", "PKG_REPO_TOKEN=t", "--secret", "SIGNING_KEY=k"), "all jobs succeeded"),
    "python": (0, (), "all jobs succeeded"),
    "rust": (0, (), "all jobs succeeded"),
}


def cidev(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "cidev"), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_every_example_is_run() -> None:
    assert example_names() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_with_cidev(name: str, tmp_path: Path) -> None:
    status, args, verdict = EXPECTED[name]
    made = cidev("init", "--example", name, str(tmp_path / name), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    ran = cidev("run", *args, cwd=tmp_path / name)
    assert (ran.returncode, ran.stdout.splitlines()[-1]) == (status, verdict), ran.stdout + ran.stderr
    if name == "failing":
        assert "[fails] job failed in " in ran.stdout and ": step 2 (Fails) failed with exit code 3" in ran.stdout


def test_init_refuses_an_unknown_example_or_a_used_directory(tmp_path: Path) -> None:
    unknown = cidev("init", "--example", "nope", str(tmp_path / "x"), cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "ERROR: unknown example 'nope': choose one of failing, pipeline, python, rust"
    assert not (tmp_path / "x").exists()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    used = cidev("init", "--example", "python", str(tmp_path / "used"), cwd=tmp_path)
    assert used.returncode == 2 and "already exists and is not an empty directory" in used.stderr
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["keep.txt"]  # nothing of the user's touched
