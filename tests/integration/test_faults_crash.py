"""``solstice-integration serve`` SIGKILLed between the dedupe claims and the publish: the push is still built.

The first process claims the delivery and the build, then waits on a slow
GitHub contents read; the test kills it (by the pid it started) right then.
A second process on the same store finishes the build once its lease ends
- exactly once, under the ids the first one chose - while the forge's
redelivery is answered as a duplicate instead of being built again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from integration.jobs import job_id_of
from integration.signature import sign
from tests.fakes.forges import FakeGitHub
from tests.integration.stack import WORKFLOW, RabbitQueue
from tests.integration.test_serve import EXE, free_port
from tests.waiting import async_wait_until

pytestmark = pytest.mark.faults

SECRET = "crash-secret"
SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"


@pytest.fixture
async def fake_github(fixtures_dir: Path, app_key) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(fixtures=fixtures_dir / "forge" / "github", app_id="77", public_key=app_key[1]) as fake:
        yield fake


class Serve:
    """One ``solstice-integration serve`` process of the test's own."""

    def __init__(self, tmp_path: Path, queue: RabbitQueue, github: FakeGitHub, key: Path) -> None:
        self.config = tmp_path / "integration.yaml"
        self.config.write_text(
            f"amqp_url: {json.dumps(queue.url)}\nqueue_prefix: {json.dumps(queue.topology.prefix)}\n"
            f"store: {json.dumps(str(tmp_path / 'seen.sqlite'))}\n"
            # a short lease, so the test does not wait the default two minutes for the dead process's build
            "webhooks:\n  handling_deadline: 3s\n  build_lease: 4s\n  retry_interval: 0.2s\n"
        )
        self.env = {**os.environ, "SOLSTICE_GITHUB_WEBHOOK_SECRET": SECRET, "SOLSTICE_GITHUB_APP_ID": "77",
                    "SOLSTICE_GITHUB_PRIVATE_KEY_FILE": str(key), "SOLSTICE_GITHUB_API_URL": github.url}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self, client: aiohttp.ClientSession) -> None:
        self.process = subprocess.Popen(
            [str(EXE), "serve", "--config", str(self.config), "--listen", f"127.0.0.1:{self.port}"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        async def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited: {self.process.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                async with client.get(f"{self.base}/healthz") as answer:
                    return answer.status == 200
            except aiohttp.ClientConnectionError:
                return False

        await async_wait_until(healthy, timeout=30, what="solstice-integration serve to listen")

    async def deliver(self, client: aiohttp.ClientSession, body: bytes, delivery: str) -> tuple[int, dict]:
        headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery,
                   "X-Hub-Signature-256": "sha256=" + sign(SECRET, body)}
        async with client.post(f"{self.base}/webhooks/github", data=body, headers=headers) as answer:
            return answer.status, await answer.json()

    async def stop(self) -> str:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)
        stderr = self.process.stderr.read().decode()  # type: ignore[union-attr]
        self.process.stderr.close()  # type: ignore[union-attr]
        return stderr


async def test_a_push_survives_the_process_dying_between_claim_and_publish(
        tmp_path: Path, app_key, fake_github: FakeGitHub, queue: RabbitQueue, payload):
    key = tmp_path / "key.pem"
    key.write_bytes(app_key[0])
    fake_github.put_file("Codertocat/Hello-World", SHA, WORKFLOW)
    fake_github.slow_next(1, 6.0, path_contains="/contents/")  # the first read is still running when it dies
    body = json.dumps(payload("github/push.new-branch")).encode()
    delivery = str(uuid.uuid4())
    first, second = Serve(tmp_path, queue, fake_github, key), Serve(tmp_path, queue, fake_github, key)
    async with aiohttp.ClientSession() as client:
        await first.start(client)
        try:
            answering = asyncio.ensure_future(first.deliver(client, body, delivery))
            await async_wait_until(lambda: any("/contents/" in path for _, path in fake_github.arrived),
                                   timeout=30, what="the workflow read (after the claims)")
            assert first.process is not None
            first.process.kill()  # SIGKILL: no cleanup of any kind
            assert await asyncio.to_thread(first.process.wait) == -signal.SIGKILL
            with pytest.raises(aiohttp.ClientError):
                await answering  # GitHub records a failed delivery
        finally:
            await first.stop()
        await second.start(client)
        try:
            # the operator presses "Redeliver": the build is not started a second time...
            status, answer = await second.deliver(client, body, delivery)
            assert (status, answer["result"]) == (200, "duplicate delivery"), answer
            # ...the stranded one is finished once its lease ends, by the process now running
            requests = await async_wait_until(queue.take, timeout=30, what="the stranded build to be published")
            status, answer = await second.deliver(client, body, str(uuid.uuid4()))  # a new delivery of that head
            assert (status, answer["result"]) == (200, "duplicate build"), answer
            async with client.get(f"{second.base}/healthz") as health:
                assert health.status == 200
        finally:
            stderr = await second.stop()
    [request] = requests
    assert (request.checkout.sha, request.key) == (SHA, "build")
    assert request.job_id == job_id_of(request.run_id, "build")
    assert await queue.count() == 0, "built exactly once"
    assert "deferred build done: queued" in stderr
