"""Helpers for tests (and bench/bench_images.py) that run jobs in real guests."""

from __future__ import annotations

import contextlib
import functools
import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from orchestrator.drivers.qemu_command import HOST_ALIAS
from tests.runner.helpers import make_repo


@contextlib.contextmanager
def served_repo(root: Path) -> Iterator[tuple[str, str]]:
    """A git repository served over plain HTTP on this host's loopback: (URL as the guest
    dials it, commit). git's "dumb" HTTP protocol needs only files (update-server-info)."""
    repo = make_repo(root, {"hello.txt": "hello from the host's git\n"})
    subprocess.run(["git", "update-server-info"], cwd=root, check=True)
    handler = functools.partial(_QuietHandler, directory=str(root / ".git"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST_ALIAS}:{server.server_address[1]}/", repo.sha
    finally:
        server.shutdown()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 -- the base class's name
        pass  # one line per object git fetches is noise in test output
