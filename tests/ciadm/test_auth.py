"""``ciadm`` and the ``token`` commands against a real ``solstice serve`` with a TLS admin listener:
tokens from the CLI, each way of giving one, refusals in one line with a hint, the local socket
needing nothing, the data directory private, and job steps that try the admin door."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ciadm.target import local_socket
from tests.admin.tls import Pki, make_pki
from tests.singlenode.harness import BIN, ServeProcess, git, git_repo
from tests.waiting import wait_until

TRACEBACK = "Traceback (most recent call last)"
# A step that tries AdminService at argv[1]; it succeeds only when refused.
# What a job's step can do with only what every image has (the job user
# cannot run the node's Python, and needs no Solstice code): one gRPC call of
# AdminService.List made by hand with curl over HTTP/2, and the grpc-status
# the server answers. The request carries no message: gRPC decides
# UNIMPLEMENTED / UNAUTHENTICATED from the headers alone (a body still being
# uploaded when that answer comes makes curl report a stream error).
PROBE = """\
target=${1#unix:}
case $target in
  /*) where="--unix-socket $target http://localhost" ;;
  *) where="http://$target" ;;
esac
answer=$(curl -v -sS -i --http2-prior-knowledge -X POST -H 'content-type: application/grpc' -H 'te: trailers' \\
         $where/solstice.v1.AdminService/List 2>&1)
code=$?
if [ $code -ne 0 ]; then echo "PROBE refused: cannot connect: $answer"; exit 0; fi
status=$(printf '%s\\n' "$answer" | tr -d '\\r' | sed -n 's/^grpc-status: //p' | head -n 1)
case $status in
  12) echo "PROBE refused: UNIMPLEMENTED" ;;
  16) echo "PROBE refused: UNAUTHENTICATED" ;;
  0) echo "PROBE reached AdminService at $target"; exit 1 ;;
  *) echo "PROBE answered grpc-status ${status:-none}: $answer"; exit 1 ;;
esac
"""
PROBE_WORKFLOW = """\
workflow name="probe" {
  job id="probe" runs_on="ubuntu-22.04" {
    step name="Try AdminService" run="sh probe.sh $PROBE_TARGET"
  }
}
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ServeProcess]:
    env = {"SOLSTICE_ADMIN_LISTEN": "127.0.0.1:0", "SOLSTICE_ADMIN_TLS_CERT": str(pki.server_cert),
           "SOLSTICE_ADMIN_TLS_KEY": str(pki.server_key)}
    with ServeProcess(tmp_path_factory.mktemp("serve") / "data", env=env) as serving:
        assert serving.admin_tcp.startswith("127.0.0.1:")
        yield serving


def run(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """A Solstice command with a clean ciadm environment (no address, token or config file) plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SOLSTICE_")}
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], env={**base, **(env or {})}, cwd=cwd,
                          capture_output=True, text=True, timeout=90)


def token(node: ServeProcess, name: str, role: str, *extra: str) -> str:
    made = run("solstice", "token", "create", "--data-dir", str(node.data_dir), "--name", name, "--role", role, *extra)
    assert made.returncode == 0, made.stderr
    assert "shown once" in made.stderr
    return made.stdout.strip()


class Remote:
    """ciadm over the TLS listener, as an operator on another machine would run it."""

    def __init__(self, node: ServeProcess, pki: Pki, home: Path) -> None:
        self.env = {"SOLSTICE_ORCHESTRATOR": node.admin_tcp, "SOLSTICE_TLS_CA": str(pki.ca),
                    "XDG_CONFIG_HOME": str(home)}

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run("ciadm", *args, env={**self.env, **env})


@pytest.fixture
def remote(node: ServeProcess, pki: Pki, tmp_path: Path) -> Remote:
    return Remote(node, pki, tmp_path / "config")


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert TRACEBACK not in done.stderr and done.returncode == 1, done.stderr
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), done.stderr
    return lines[0]


def test_remote_ciadm_needs_a_token_and_says_where_to_give_one(node: ServeProcess, remote: Remote) -> None:
    line = error_line(remote("list"))
    assert "needs an operator token" in line
    assert "--token" in line and "$SOLSTICE_TOKEN" in line and "ciadm.yaml" in line


def test_each_way_of_giving_a_token_and_each_refusal(node: ServeProcess, remote: Remote, tmp_path: Path) -> None:
    reader = token(node, "reader", "read")
    assert remote("--token", reader, "list").returncode == 0
    assert remote("hosts", SOLSTICE_TOKEN=reader).returncode == 0
    denied = error_line(remote("drain", "no-host", SOLSTICE_TOKEN=reader))
    assert "Drain needs the admin role; 'reader' has read" in denied and "ask an admin" in denied
    config = tmp_path / "config" / "solstice" / "ciadm.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(f"token: {reader}\n")
    config.chmod(0o644)
    assert "others can read it" in error_line(remote("list"))
    config.chmod(0o600)
    assert remote("list").returncode == 0
    wrong = reader[:-1] + ("A" if reader[-1] != "A" else "B")
    assert "not valid" in error_line(remote("--token", wrong, "list"))  # the flag wins over the file
    config.write_text(f"token: {reader}\nunknown: 1\n")
    assert "unknown setting" in error_line(remote("list"))


def test_token_commands_create_list_revoke_and_expiry(node: ServeProcess, remote: Remote) -> None:
    operator = token(node, "operator", "operate", "--expires", "90d")
    brief = token(node, "brief", "read", "--expires", "1s")
    listed = run("solstice", "token", "list", "--data-dir", str(node.data_dir), "--json")
    tokens = {t["name"]: t for t in json.loads(listed.stdout)}
    assert tokens["operator"]["role"] == "operate" and tokens["operator"]["expires_at"]
    assert operator not in listed.stdout and tokens["operator"]["token_id"] in operator
    assert remote("--token", operator, "list").returncode == 0
    revoked = run("solstice", "token", "revoke", "operator", "--data-dir", str(node.data_dir))
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert "was revoked" in error_line(remote("--token", operator, "list"))
    wait_until(lambda: remote("--token", brief, "list").returncode == 1, 30, "the 1s token to be refused")
    assert "expired" in error_line(remote("--token", brief, "list"))
    # An admin mints tokens remotely too; the text is shown once, only a hash is stored.
    admin = token(node, "root-op", "admin")
    made = remote("--token", admin, "token", "create", "--name", "dash", "--role", "read", "--json")
    dash = json.loads(made.stdout)
    assert dash["role"] == "read" and remote("--token", dash["token"], "hosts").returncode == 0
    assert "needs the admin role" in error_line(remote("--token", dash["token"], "token", "list"))
    state = (node.data_dir / "state.sqlite").read_bytes()
    assert dash["token"].encode() not in state and operator.encode() not in state


def test_ciadm_on_this_host_needs_nothing(node: ServeProcess, tmp_path: Path) -> None:
    done = run("ciadm", "hosts", "--json", env={"SOLSTICE_DATA_DIR": str(node.data_dir),
                                                "XDG_CONFIG_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["alive"]
    missing = run("ciadm", "list", env={"SOLSTICE_DATA_DIR": str(tmp_path / "none"), "XDG_CONFIG_HOME": str(tmp_path)})
    assert missing.returncode == 3 and "cannot reach the orchestrator" in missing.stderr


def test_the_default_data_directories_are_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    node_dir = tmp_path / ".local" / "state" / "solstice" / "node"
    node_dir.mkdir(parents=True)
    (node_dir / "admin.sock").touch()
    assert local_socket({}) == node_dir / "admin.sock"  # solstice-orchestrator's default
    (node_dir.parent / "admin.sock").touch()
    assert local_socket({}) == node_dir.parent / "admin.sock"  # solstice serve's comes first
    assert local_socket({"SOLSTICE_DATA_DIR": "/srv/ci"}) == Path("/srv/ci/admin.sock")


def test_state_files_are_private(node: ServeProcess) -> None:
    data = node.data_dir

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(data) == 0o700 and mode(data / "logs") == 0o700 and mode(data / ".admin") == 0o700
    for name in ("state.sqlite", "queue.sqlite", "events.sqlite", "integration.sqlite", "serve.lock", "admin.sock"):
        assert mode(data / name) == 0o600, name
    for extra in data.glob("*.sqlite-*"):  # SQLite's -wal / -shm take the database's mode
        assert mode(extra) == 0o600, extra


def probe_job(node: ServeProcess, tmp_path: Path, target: str) -> tuple[dict, str]:
    repo = git_repo(tmp_path / "repo", PROBE_WORKFLOW)
    (repo / "probe.sh").write_text(PROBE)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "probe")
    submitted = node.ciadm("submit", "--json", "--env", f"PROBE_TARGET={target}", cwd=repo)
    assert submitted.returncode == 0, submitted.stderr
    [job] = json.loads(submitted.stdout)
    done = node.wait_state(job["job_id"], "succeeded", "failed", "errored", timeout=90)
    return done, node.ciadm("logs", job["job_id"]).stdout


def test_a_step_cannot_reach_admin_service_by_the_runner_address(node: ServeProcess, tmp_path: Path) -> None:
    job, log = probe_job(node, tmp_path, node.grpc)
    assert "PROBE refused: UNIMPLEMENTED" in log, log
    assert job["state"] == "succeeded"


def test_a_step_cannot_reach_admin_service_by_the_socket(node: ServeProcess, tmp_path: Path) -> None:
    job, log = probe_job(node, tmp_path, node.admin)
    # the job user cannot even connect: the socket is 0600 in the node's 0700 data directory
    assert "PROBE refused: cannot connect" in log and "Permission denied" in log, log
    assert job["state"] == "succeeded"
