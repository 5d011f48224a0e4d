"""A million-line job read whole and in order by every reader of one ``solstice serve``.

The job's step prints ``seq 1 500000``, waits for a gate file, then prints
``seq 500001 1000000``, so readers can be started before it prints anything
and in the middle:

* ``ciadm logs --follow`` started before the job printed a line;
* ``ciadm logs --follow`` started in the middle (the gate holds the job there);
* two more followers whose connection is cut in the middle: one over TCP (the
  TLS listener, a token, and a TCP proxy of the test's between them), one over
  the Unix socket (a relay of the test's in front of the node's socket, the
  socket's counterpart of the proxy); each resumes from its last line;
* ``ciadm logs`` of the finished job; the raw log over HTTP (whole, ``Range``
  resumed, ``?tail``).

Each prints the same bytes: the numbers 1..1,000,000 one per line, in order,
with Solstice's own "## " lines around them. ``cidev run`` of the same step
prints every number in order too.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.admin.tls import Pki, make_pki
from tests.logs.relay import UnixRelay
from tests.proxy import TcpProxy
from tests.singlenode.harness import BIN, ServeProcess, git_repo
from tests.waiting import async_wait_until

LINES = 1_000_000
HALF = LINES // 2
NUMBERS = b"".join(b"%d\n" % i for i in range(1, LINES + 1))


def workflow(first: Path, second: Path) -> str:
    def wait(gate: Path) -> str:
        return f"while [ ! -e {gate} ]; do sleep 0.05; done"
    return f"""\
workflow name="million" {{
  job id="big" runs_on="ubuntu-22.04" {{
    step name="Lines" run="{wait(first)}; seq 1 {HALF}; {wait(second)}; seq {HALF + 1} {LINES}"
  }}
}}
"""


def numbers(output: bytes) -> bytes:
    """The job's own lines of a log as printed (Solstice's "## " lines left out)."""
    return b"".join(line + b"\n" for line in output.split(b"\n") if line and not line.startswith(b"## "))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ServeProcess]:
    env = {"SOLSTICE_ADMIN_LISTEN": "127.0.0.1:0", "SOLSTICE_ADMIN_TLS_CERT": str(pki.server_cert),
           "SOLSTICE_ADMIN_TLS_KEY": str(pki.server_key)}
    with ServeProcess(tmp_path_factory.mktemp("serve") / "data", env=env) as serving:
        yield serving


def _clean_env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SOLSTICE_")}
    return {**base, **extra}


def _token(node: ServeProcess) -> str:
    made = subprocess.run([str(BIN / "solstice"), "token", "create", "--data-dir", str(node.data_dir),
                           "--name", "reader", "--role", "read"], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


class Follower:
    """``ciadm logs --follow JOB`` running in the background, its output in a file."""

    def __init__(self, out: Path, job_id: str, env: dict[str, str]) -> None:
        self.out = out
        self._file = out.open("wb")
        self.proc = subprocess.Popen([str(BIN / "ciadm"), "logs", "--follow", job_id], stdout=self._file,
                                     stderr=subprocess.PIPE, env=env)

    def printed(self, text: bytes) -> bool:
        return text in self.out.read_bytes()

    async def finish(self) -> tuple[int, bytes, str]:
        code = await asyncio.to_thread(self.proc.wait, 120)
        self._file.close()
        assert self.proc.stderr is not None
        return code, self.out.read_bytes(), self.proc.stderr.read().decode()


def _http(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as err:  # 404 before the job logged its first line
        return err.code, dict(err.headers), err.read()


async def test_a_million_lines_reach_every_reader_whole_and_in_order(node: ServeProcess, pki: Pki,
                                                                     tmp_path: Path, job_dir: Path) -> None:
    first, second = job_dir / "gate1", job_dir / "gate2"  # where the contained job's user can look
    repo = git_repo(tmp_path / "repo", workflow(first, second))
    submitted = node.ciadm_json("submit", cwd=repo)
    job_id = submitted[0]["job_id"]
    local = _clean_env(SOLSTICE_ORCHESTRATOR=node.admin)

    before = Follower(tmp_path / "before.out", job_id, local)  # the job has not printed a line yet
    first.touch()
    tail = f"{node.url}/jobs/{job_id}/log?tail=1"
    await async_wait_until(lambda: _http(tail)[2] == b"%d\n" % HALF, timeout=120, what="the first half logged",
                           interval=0.2)

    middle = Follower(tmp_path / "middle.out", job_id, local)
    proxy = TcpProxy(*node.admin_tcp.rsplit(":", 1)[0:1], int(node.admin_tcp.rsplit(":", 1)[1]))
    await proxy.start()
    relay = UnixRelay(tmp_path / "relay.sock", Path(node.admin.removeprefix("unix:")))
    await relay.start()
    try:
        remote = _clean_env(SOLSTICE_ORCHESTRATOR=f"127.0.0.1:{proxy.port}", SOLSTICE_TLS_CA=str(pki.ca),
                            SOLSTICE_TOKEN=_token(node), XDG_CONFIG_HOME=str(tmp_path / "config"))
        over_tcp = Follower(tmp_path / "tcp.out", job_id, remote)
        over_socket = Follower(tmp_path / "socket.out", job_id, _clean_env(SOLSTICE_ORCHESTRATOR=str(relay.path)))
        mark = b"\n%d\n" % HALF
        for follower in (middle, over_tcp, over_socket):
            await async_wait_until(lambda f=follower: f.printed(mark), timeout=60, what="a follower at the half")
        # Cut mid-stream: each has the first half and waits on an open stream for the rest.
        assert proxy.cut() >= 2 and relay.open_connections == 1
        await relay.cut()
        second.touch()
        results = {name: await follower.finish() for name, follower in
                   (("before", before), ("middle", middle), ("tcp", over_tcp), ("socket", over_socket))}
        assert proxy.accepted >= 2 and relay.accepted >= 2  # each came back for the rest
    finally:
        await proxy.close()
        await relay.close()

    for name, (code, out, err) in results.items():
        assert code == 0, f"{name}: {err}"
        assert err.strip().splitlines()[-1] == f"job {job_id} succeeded", name
        assert numbers(out) == NUMBERS, f"{name}: lines missing, doubled or out of order"
    whole = results["before"][1]
    assert all(out == whole for _, out, _ in results.values())  # the "## " lines too
    assert whole.startswith(b"## ") and b"## step 1" in whole

    printed = subprocess.run([str(BIN / "ciadm"), "logs", job_id], capture_output=True, env=local, timeout=120)
    assert printed.returncode == 0 and printed.stdout == whole

    status, headers, body = await asyncio.to_thread(_http, f"{node.url}/jobs/{job_id}/log")
    assert status == 200 and body == whole
    assert headers["Accept-Ranges"] == "bytes" and "Content-Length" not in headers  # streamed
    cut = len(whole) // 3
    status, headers, rest = await asyncio.to_thread(_http, f"{node.url}/jobs/{job_id}/log",
                                                    {"Range": f"bytes={cut}-"})
    assert status == 206 and whole[:cut] + rest == whole
    assert headers["Content-Range"] == f"bytes {cut}-{len(whole) - 1}/{len(whole)}"
    etag = headers["ETag"]
    status, _, again = await asyncio.to_thread(_http, f"{node.url}/jobs/{job_id}/log",
                                               {"Range": "bytes=-9", "If-Range": etag})
    assert status == 206 and again == whole[-9:]
    status, _, last = await asyncio.to_thread(_http, f"{node.url}/jobs/{job_id}/log?tail=3")
    assert status == 200 and last.splitlines()[:2] == [b"999999", b"1000000"]
    assert len(last.splitlines()) == 3 and last.splitlines()[2].startswith(b"## exited with exit code 0")


def test_cidev_run_prints_a_million_lines_in_order(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", f"""\
workflow name="million" {{
  job id="big" runs_on="ubuntu-22.04" {{
    step name="Lines" run="seq 1 {LINES}"
  }}
}}
""")
    done = subprocess.run([str(BIN / "cidev"), "run"], cwd=repo, capture_output=True, timeout=300,
                          env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    prefix = b"[big] | "
    printed = [line[len(prefix):] for line in done.stdout.split(b"\n") if line.startswith(prefix)]
    assert b"".join(line + b"\n" for line in printed) == NUMBERS
