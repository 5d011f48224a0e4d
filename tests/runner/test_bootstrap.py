"""Where the runner finds its orchestrator and token, and what it says when it cannot."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common.bootstrap import BootstrapError, RunnerBootstrap, render_user_data
from runner.bootstrap import resolve
from tests.runner.helpers import ROOT

ENV = {"SOLSTICE_RUNNER_ORCHESTRATOR": "env-host:2", "SOLSTICE_RUNNER_TOKEN": "env-token"}


@pytest.fixture
def sources(tmp_path):
    env_file = tmp_path / "runner.env"
    env_file.write_text(RunnerBootstrap("file-host:3", "file-token").env_file())
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "user-data").write_text(render_user_data(RunnerBootstrap("seed-host:4", "seed-token")))
    return env_file, seed


def test_flags_beat_env_beat_env_file_beat_nocloud(sources):
    env_file, seed = sources
    kw = dict(env_files=[env_file], nocloud_dirs=[seed])
    assert resolve(orchestrator="flag-host:1", token="flag-token", env=ENV, **kw) == RunnerBootstrap(
        "flag-host:1", "flag-token")
    assert resolve(orchestrator=None, token=None, env=ENV, **kw) == RunnerBootstrap("env-host:2", "env-token")
    assert resolve(orchestrator=None, token=None, env={}, **kw) == RunnerBootstrap("file-host:3", "file-token")
    assert resolve(orchestrator=None, token=None, env={}, env_files=[env_file.with_name("absent")],
                   nocloud_dirs=[seed]) == RunnerBootstrap("seed-host:4", "seed-token")


def test_each_value_from_its_best_source(sources):
    env_file, seed = sources
    got = resolve(orchestrator="flag-host:1", token=None, env={"SOLSTICE_RUNNER_TOKEN": "env-token"},
                  env_files=[env_file], nocloud_dirs=[seed])
    assert got == RunnerBootstrap("flag-host:1", "env-token")


def test_missing_everywhere_names_every_place(tmp_path):
    with pytest.raises(BootstrapError) as err:
        resolve(orchestrator=None, token=None, env={}, env_files=[tmp_path / "none.env"],
                nocloud_dirs=[tmp_path / "noseed"])
    assert str(tmp_path / "none.env") in str(err.value) and "noseed/user-data" in str(err.value)


def test_malformed_env_file_is_an_error(tmp_path):
    bad = tmp_path / "runner.env"
    bad.write_text("this is not key value\n")
    with pytest.raises(BootstrapError, match="line 1"):
        resolve(orchestrator=None, token=None, env={}, env_files=[bad], nocloud_dirs=[])


def _cli(*args, env=None):
    base = {k: v for k, v in os.environ.items() if not k.startswith("SOLSTICE_")}
    return subprocess.run([sys.executable, "-m", "runner.cli", "run", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**base, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=60)


def test_cli_without_bootstrap_exits_3_with_one_error_line(tmp_path):
    proc = _cli("--env-file", str(tmp_path / "none.env"), "--nocloud", str(tmp_path / "noseed"))
    assert proc.returncode == 3
    assert proc.stderr.startswith("ERROR: no SOLSTICE_RUNNER_ORCHESTRATOR or SOLSTICE_RUNNER_TOKEN found")
    assert "Traceback" not in proc.stderr


def test_cli_reads_the_env_file_and_reports_an_unreachable_orchestrator(tmp_path):
    # A port nobody listens on: the runner gives up after the offline limit with exit 5.
    env_file = tmp_path / "runner.env"
    from common.tokens import TokenIssuer

    token = TokenIssuer(b"x" * 32, 60).issue("job-9", 1)
    env_file.write_text(RunnerBootstrap("127.0.0.1:9", token).env_file())
    proc = _cli("--env-file", str(env_file), "--offline-limit", "0.5", "--dir", str(tmp_path / "vm"))
    assert proc.returncode == 5, proc.stderr
    assert "127.0.0.1:9" in proc.stderr and token not in proc.stderr
