"""The runner's import graph stays within what its guest image bundles (pyproject's base set).

A golden image carries the runner with grpcio, protobuf, PyJWT, PyYAML and click
only: a module the runner imports that pulls in a server library (the KDL
parser, the database and broker clients, aiohttp, cryptography) fails every job
on that image at the runner's start - which only a VM boot would otherwise show.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT

SERVER_ONLY = ("kdl", "asyncpg", "aio_pika", "aiormq", "aiohttp", "cryptography", "aiosqlite", "prometheus_client")

PROBE = """
import json, sys
import runner.cli, runner.agent, runner.checkout
print(json.dumps(sorted(name for name in sys.modules if '.' not in name)))
"""


def test_the_runner_imports_no_server_library() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert "runner" in loaded and "grpc" in loaded  # the probe did import the runner
    assert sorted(loaded & set(SERVER_ONLY)) == []
