"""A real local git repository and a real runner subprocess."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from common.logbatch import LogLine, iter_lines
from common.rpc import runner_pb2
from common.tokens import TokenIssuer
from orchestrator.logstore import LogStore
from orchestrator.runnerapi import RunnerGateway, RunnerServer
from runner.spool import LENGTH
from tests.protocol.harness import KEY

RUNNER = [sys.executable, "-m", "runner.cli"]
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Repo:
    url: str
    sha: str


def make_repo(path: Path, files: dict[str, str]) -> Repo:
    path.mkdir(parents=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True, text=True).stdout

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "first")
    (path / "LATER").write_text("a later commit the job must not see\n")
    first = git("rev-parse", "HEAD").strip()
    git("add", "-A")
    git("commit", "-q", "-m", "second")
    return Repo(f"file://{path}", first)


async def serve_runners(logdir: Path, port: int = 0, patience: float = 60.0
                        ) -> tuple[LogStore, RunnerGateway, RunnerServer]:
    """A started RunnerService on ``port`` (0: any) storing logs in ``logdir``; ``patience``: the node's
    runner_silence its gateway hands out. The caller stops the server and closes the store."""
    store = LogStore(logdir)
    gateway = RunnerGateway(store, TokenIssuer(KEY, ttl_seconds=600), heartbeat_interval=0.2,
                            runner_patience=patience)
    server = RunnerServer(gateway, port=port, grace_seconds=0)
    await server.start()
    return store, gateway, server


async def start_runner(address: str, token: str, root: Path, *extra: str,
                       env: dict[str, str] | None = None, program: list[str] | None = None
                       ) -> asyncio.subprocess.Process:
    """The runner of this checkout; or ``program`` (an installed ``solstice-runner``), which then
    gets no PYTHONPATH and starts outside the checkout, so it imports only what it installed."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SOLSTICE_") and k != "PYTHONPATH"}
    if program is None:
        base["PYTHONPATH"] = str(ROOT)
    return await asyncio.create_subprocess_exec(
        *(program or RUNNER), "run", "--orchestrator", address, "--token", token, "--dir", str(root),
        "--log-format", "json", *extra,
        env={**base, **(env or {})}, cwd=ROOT if program is None else root.parent,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def runner_exit(proc: asyncio.subprocess.Process, timeout: float = 60) -> tuple[int, str]:
    # One communicate() for the whole life of the process: cancelling one loses what it has read.
    talk = asyncio.ensure_future(proc.communicate())
    try:
        _, err = await asyncio.wait_for(asyncio.shield(talk), timeout)
    except TimeoutError:
        proc.kill()
        _, err = await talk
        raise AssertionError(f"runner did not exit within {timeout}s:\n{err.decode()[-3000:]}") from None
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def record_batches(monkeypatch) -> list[bytes]:  # type: ignore[no-untyped-def]
    """Every log batch as the orchestrator receives it from the runner (before it masks them again)."""
    from orchestrator.logstore.joblog import JobLog

    received: list[bytes] = []
    append = JobLog.append

    async def recording(self, batch, *args, **kwargs):  # type: ignore[no-untyped-def]
        received.append(batch.SerializeToString())
        return await append(self, batch, *args, **kwargs)

    monkeypatch.setattr(JobLog, "append", recording)
    return received


def read_spool(path: Path) -> list[LogLine]:
    """Every line a runner's spool file holds (u32 length + serialized LogBatch records)."""
    raw = path.read_bytes()
    pos, lines = 0, []
    while pos < len(raw):
        (length,) = LENGTH.unpack_from(raw, pos)
        lines.extend(iter_lines(runner_pb2.LogBatch.FromString(raw[pos + 4 : pos + 4 + length])))
        pos += 4 + length
    return lines
