"""A real ``solstice serve`` process for tests, and the real ``ciadm`` against it.

    with ServeProcess(tmp / "data") as node:       # started, /healthz answered 200
        result = node.ciadm("submit", "--json", cwd=repo)
        node.get("/jobs/<id>/log")                  # (status, text)

Ports are 0 (the process prints what it bound); the process is stopped with
SIGTERM and must exit 0. Its output is kept (``node.output()``) for messages.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.waiting import wait_until

BIN = Path(sys.executable).parent
START_TIMEOUT = 60.0

_GRPC = re.compile(r"^\s+gRPC:\s+(\S+)")
_ADMIN = re.compile(r"^\s+admin:\s+(\S+)")
_ADMIN_TCP = re.compile(r"remote operators: (\S+) \(TLS")
_HEALTH = re.compile(r"\(health: (http://\S+)/healthz\)")


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args], cwd=cwd,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def git_repo(path: Path, workflow: str) -> Path:
    """A git checkout at ``path`` with ``workflow`` committed as .solstice/workflow.kdl."""
    (path / ".solstice").mkdir(parents=True)
    (path / ".solstice" / "workflow.kdl").write_text(workflow)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "workflow")
    return path


def ciadm(address: str, *args: str, cwd: Path | None = None, timeout: float = 60.0,
          env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``ciadm`` with ``SOLSTICE_ORCHESTRATOR=address`` (and ``env``; ``stdin``: its standard input)."""
    env = {**os.environ, "SOLSTICE_ORCHESTRATOR": address, **(env or {})}
    return subprocess.run([str(BIN / "ciadm"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, input=stdin)


class ServeProcess:
    """``solstice serve`` on loopback with its state in ``data_dir``."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.extra_env = env or {}
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.grpc = ""  # the runners' address
        self.admin = ""  # unix:<data_dir>/admin.sock: AdminService
        self.admin_tcp = ""  # HOST:PORT of its TLS listener, with admin.listen
        self.url = ""
        self._reader: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> ServeProcess:
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **self.extra_env}
        self.proc = subprocess.Popen(
            [str(BIN / "solstice"), "serve", "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0",
             "--grpc", "127.0.0.1:0", "--log-format", "json", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_until(self._addresses, START_TIMEOUT, f"solstice serve to print its addresses:\n{self.output()}")
        wait_until(lambda: self.get("/healthz")[0] == 200, START_TIMEOUT, "/healthz to answer 200")
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _addresses(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"solstice serve exited with {self.proc.returncode}:\n{self.output()}")
        for line in list(self.lines):
            if m := _GRPC.match(line):
                self.grpc = m.group(1)
            if m := _ADMIN.match(line):
                self.admin = m.group(1)
                tcp = _ADMIN_TCP.search(line)
                self.admin_tcp = tcp.group(1) if tcp else ""
            if m := _HEALTH.search(line):
                self.url = m.group(1)
        return bool(self.grpc and self.admin and self.url)

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90.0) -> int:
        """Signal the process and wait for its exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"solstice serve did not stop within {timeout}s:\n{self.output()}") from None
        if self._reader is not None:
            self._reader.join(10)
        return code

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        code = self.stop()
        assert code == 0, f"solstice serve exited with {code}:\n{self.output()}"

    # -- talking to it --------------------------------------------------------------
    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except (urllib.error.URLError, ConnectionError):
            return 0, ""

    def ciadm(self, *args: str, cwd: Path | None = None, timeout: float = 60.0,
              env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the real ``ciadm`` against this node's admin socket (as its own user: no token)."""
        return ciadm(self.admin, *args, cwd=cwd, timeout=timeout, env=env, stdin=stdin)

    def ciadm_json(self, *args: str, cwd: Path | None = None) -> Any:
        done = self.ciadm(*args, "--json", cwd=cwd)
        assert done.returncode == 0, f"ciadm {' '.join(args)} exited {done.returncode}: {done.stderr}"
        return json.loads(done.stdout)

    def status(self, job_id: str) -> dict[str, Any]:
        return self.ciadm_json("status", job_id)

    def wait_state(self, job_id: str, *states: str, timeout: float = 60.0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            job = self.status(job_id)
            return job if job["state"] in states else None

        return wait_until(reached, timeout, f"job {job_id} to reach {'/'.join(states)}", interval=0.2)
