"""``solstice serve`` settings: SOLSTICE_* variables, a config that restricts labels, one-line start-up errors."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from common.config import load_config
from common.errors import ConfigError
from orchestrator.singlenode.settings import ServeSettings
from tests.singlenode.harness import BIN, ServeProcess, git_repo

TWO_LABELS = """\
workflow name="labels" {
  job id="served" runs_on="ubuntu-22.04" {
    step run="echo served"
  }
  job id="unserved" runs_on="windows-11" {
    step run="echo nobody runs me"
  }
}
"""


def test_fixed_environment_names_reach_the_settings(tmp_path: Path) -> None:
    env = {
        "SOLSTICE_DATA_DIR": str(tmp_path / "d"), "SOLSTICE_LISTEN": "0.0.0.0:9090", "SOLSTICE_GRPC": "127.0.0.1:6000",
        "SOLSTICE_GITHUB_WEBHOOK_SECRET": "s1", "SOLSTICE_GITHUB_APP_ID": "12",
        "SOLSTICE_GITHUB_PRIVATE_KEY_FILE": "/k.pem",
        "SOLSTICE_GITHUB_API_URL": "https://ghe.example/api/v3", "SOLSTICE_FORGEJO_WEBHOOK_SECRET": "s2",
        "SOLSTICE_FORGEJO_URL": "https://codeberg.example", "SOLSTICE_FORGEJO_TOKEN": "t",
    }
    s = load_config(ServeSettings, env=env)
    assert (s.data_dir, s.listen, s.grpc) == (tmp_path / "d", "0.0.0.0:9090", "127.0.0.1:6000")
    assert (s.github.webhook_secret, s.github.app_id, str(s.github.private_key_file), s.github.api_url) == (
        "s1", "12", "/k.pem", "https://ghe.example/api/v3")
    assert (s.forgejo.webhook_secret, s.forgejo.url, s.forgejo.token) == ("s2", "https://codeberg.example", "t")
    assert s.http_url() == "http://127.0.0.1:9090"  # what forge statuses link to when listening everywhere
    node = s.node_settings()
    assert node.node.labels == ("*",) and node.store_url.endswith("/d/state.sqlite")
    assert node.drivers.local.state_dir == tmp_path / "d" / "vms"
    integration = s.integration_settings()
    assert integration.store == str(tmp_path / "d" / "integration.sqlite")
    assert integration.github.webhook_secret == "s1"


def test_defaults_need_no_file() -> None:
    s = load_config(ServeSettings, env={})
    assert (s.listen, s.grpc, s.every_label) == ("127.0.0.1:8080", "127.0.0.1:50051", True)
    assert s.github.api_url == "https://api.github.com"


@pytest.mark.parametrize("env, message", [
    ({"SOLSTICE_LISTEN": "8080"}, "listen (SOLSTICE_LISTEN) '8080' is not HOST:PORT"),
    ({"SOLSTICE_GRPC": "host:port"}, "grpc (SOLSTICE_GRPC) 'host:port' is not HOST:PORT"),
])
def test_bad_addresses_are_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(ServeSettings, env=env)


def test_a_config_restricts_labels(tmp_path: Path) -> None:
    config = tmp_path / "solstice.yaml"
    config.write_text("labels: [ubuntu-22.04]\ncapacity: 2\n")
    repo = git_repo(tmp_path / "repo", TWO_LABELS)
    with ServeProcess(tmp_path / "data", args=("--config", str(config))) as node:
        assert "driver:    local, serving ubuntu-22.04" in node.output()
        jobs = {j["key"]: j for j in node.ciadm_json("submit", cwd=repo)}
        served = node.wait_state(jobs["served"]["job_id"], "succeeded")
        unserved = node.wait_state(jobs["unserved"]["job_id"], "failed")
        assert served["driver"] == "local"
        assert "windows-11" in unserved["reason"] and "unroutable" in unserved["reason"]
        [host] = node.ciadm_json("hosts")
        assert host["labels"] == ["ubuntu-22.04"] and host["capacity"] == 2


def serve_once(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "solstice"), "serve", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_start_up_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("labels: [ok]\nno_such_setting: 1\n")
    done = serve_once("--data-dir", str(tmp_path / "d"), "--config", str(bad))
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "ERROR: unknown setting no_such_setting; known settings here: " + ", ".join(
            f.name for f in __import__("dataclasses").fields(ServeSettings))]

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = serve_once("--data-dir", str(tmp_path / "d"), env={"SOLSTICE_LISTEN": f"127.0.0.1:{port}"})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"ERROR: cannot listen on 127.0.0.1:{port} (HTTP): Address already in use"]
    assert done.stdout == ""

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = serve_once("--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0", "--grpc", f"127.0.0.1:{port}")
    assert done.returncode == 1
    # Only our line: not the gRPC core's own "Failed to add port" nor anything logged on the way.
    assert done.stderr.strip().splitlines() == [
        f"ERROR: cannot listen on 127.0.0.1:{port} (gRPC): Address already in use"]
    assert done.stdout == ""


def test_one_data_directory_serves_one_process(tmp_path: Path) -> None:
    with ServeProcess(tmp_path / "data") as node:
        pid = node.proc.pid if node.proc else 0
        done = serve_once("--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0", "--grpc", "127.0.0.1:0")
        assert done.returncode == 1
        [line] = [line for line in done.stderr.strip().splitlines() if line.startswith("ERROR")]
        assert line == f"ERROR: another solstice serve (pid {pid}) is using the data directory {tmp_path / 'data'}"
        assert node.get("/healthz")[0] == 200  # the first one is unharmed


def test_the_readme_example_config_loads(tmp_path: Path) -> None:
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    [example] = re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL)
    config = tmp_path / "solstice.yaml"
    config.write_text(example)
    s = load_config(ServeSettings, config, env={})
    assert s.labels == ("ubuntu-22.04", "illumos-stable") and not s.every_label
    assert (s.capacity, s.shutdown_grace, s.webhooks.fork_policy) == (2, 120.0, "label")


MIXED = """\
workflow name="mixed" {
  job id="real" runs_on="ubuntu-22.04" {
    step run="echo from a real runner"
  }
  job id="quick" runs_on="fast" {
    step run="exit 0"
  }
}
"""


def test_labels_can_map_to_other_drivers(tmp_path: Path) -> None:
    config = tmp_path / "solstice.yaml"
    config.write_text("label_drivers:\n  fast: instant\n")  # instant: the in-process test driver
    repo = git_repo(tmp_path / "repo", MIXED)
    with ServeProcess(tmp_path / "data", args=("--config", str(config))) as node:
        assert ("driver:    local+instant, serving every runs_on label (fast -> instant, the rest -> local)"
                in node.output())
        jobs = {j["key"]: j["job_id"] for j in node.ciadm_json("submit", cwd=repo)}
        real = node.wait_state(jobs["real"], "succeeded")
        quick = node.wait_state(jobs["quick"], "succeeded")
        assert real["driver"] == quick["driver"] == "local+instant"
        assert "from a real runner" in node.get(f"/jobs/{jobs['real']}/log")[1]
        assert "<dd>instant (serves every runs_on label" in node.get(f"/jobs/{jobs['quick']}")[1]
        assert "<dd>local (serves every runs_on label" in node.get(f"/jobs/{jobs['real']}")[1]
        assert (tmp_path / "data" / "vms-instant").is_dir()  # each driver keeps its VMs apart

    bad = tmp_path / "bad.yaml"
    bad.write_text("label_drivers:\n  fast: nosuch\n")
    done = serve_once("--data-dir", str(tmp_path / "d2"), "--listen", "127.0.0.1:0", "--grpc", "127.0.0.1:0",
                      "--config", str(bad))
    assert done.returncode == 1
    [line] = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    assert line.startswith("ERROR: unknown VM driver 'nosuch'")
