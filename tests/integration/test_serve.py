"""``solstice-integration serve`` as a real process: config file + SOLSTICE_* env, webhooks in, checks out."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from common.queue import RabbitEventPublisher
from common.rpc import jobs_pb2
from integration.signature import sign
from tests.fakes.forges import FakeGitHub
from tests.integration.events import job_event
from tests.integration.stack import WORKFLOW, RabbitQueue
from tests.waiting import async_wait_until

EXE = Path(sys.executable).parent / "solstice-integration"
SECRET = "serve-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def fake_github(fixtures_dir: Path, app_key) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(fixtures=fixtures_dir / "forge" / "github", app_id="77", public_key=app_key[1]) as fake:
        yield fake


async def test_serve_takes_webhooks_and_reports_events(tmp_path: Path, app_key, fake_github: FakeGitHub,
                                                       queue: RabbitQueue, payload):
    key = tmp_path / "key.pem"
    key.write_bytes(app_key[0])
    config = tmp_path / "integration.yaml"
    config.write_text(
        f"amqp_url: {json.dumps(queue.url)}\nqueue_prefix: {json.dumps(queue.topology.prefix)}\n"
        f"store: {json.dumps(str(tmp_path / 'seen.sqlite'))}\nwebhooks:\n  max_body_bytes: 65536\n"
    )
    port = free_port()
    env = {
        **os.environ,
        "SOLSTICE_GITHUB_WEBHOOK_SECRET": SECRET,
        "SOLSTICE_GITHUB_APP_ID": "77",
        "SOLSTICE_GITHUB_PRIVATE_KEY_FILE": str(key),
        "SOLSTICE_GITHUB_API_URL": fake_github.url,
        "SOLSTICE_PUBLIC_URL": "https://ci.example.org",
    }
    process = subprocess.Popen(
        [str(EXE), "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--log-format", "json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as client:
            async def healthy() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"serve exited: {process.stderr.read().decode()}")  # type: ignore[union-attr]
                try:
                    async with client.get(f"{base}/healthz") as answer:
                        return answer.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await async_wait_until(healthy, timeout=30, what="solstice-integration serve to listen")
            sha = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
            fake_github.put_file("Codertocat/Hello-World", sha, WORKFLOW)
            body = json.dumps(payload("github/push.new-branch")).encode()
            headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4()),
                       "X-Hub-Signature-256": "sha256=" + sign(SECRET, body)}
            async with client.post(f"{base}/webhooks/github", data=body, headers=headers) as answer:
                assert answer.status == 202, await answer.text()
            # the YAML's max_body_bytes applies
            async with client.post(f"{base}/webhooks/github", data=b"x" * 70000, headers=headers) as answer:
                assert answer.status == 413
        [request] = await queue.take()
        publisher = RabbitEventPublisher(queue.url, queue.topology)
        await publisher.start()
        try:
            done = job_event(request.job_id, jobs_pb2.JOB_STATE_SUCCEEDED)
            done.checkout.CopyFrom(request.checkout)
            await publisher.publish([done])
        finally:
            await publisher.close()
        await async_wait_until(lambda: fake_github.check_runs, what="the check run of the finished job")
        [check] = fake_github.check_runs.values()
        assert check["conclusion"] == "success"
        assert check["details_url"] == f"https://ci.example.org/jobs/{request.job_id}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        stderr = process.stderr.read().decode()  # type: ignore[union-attr]
        process.stdout.close()  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]
    assert code == 0, stderr
    assert SECRET not in stderr


def test_bad_settings_end_in_one_error_line(tmp_path: Path):
    config = tmp_path / "bad.yaml"
    config.write_text("webhooks:\n  fork_policy: anyone\n")
    out = subprocess.run([str(EXE), "serve", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "ERROR: webhooks.fork_policy 'anyone' is not one of untrusted, label, approval"
    ]
