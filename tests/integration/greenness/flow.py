"""The whole integration with greenness on: a fake Forgejo with a commit graph, the real service, RabbitMQ."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from common.rpc import jobs_pb2
from integration.greenness.service import Greenness
from tests.integration.stack import IntegrationStack, RabbitQueue

REPO = "gitea/webhooks"
REF = "refs/heads/develop"


def workflow_text(*jobs: str) -> str:
    body = "".join(f'  job id="{j}" runs_on="illumos-stable" {{\n    step run="make {j}"\n  }}\n' for j in jobs)
    return f"workflow {{\n{body}}}\n"


class Flow:
    """Pushes (webhook or poll), takes the published requests and answers them with job events."""

    def __init__(self, stack: IntegrationStack, queue: RabbitQueue, payload: Callable[[str], dict[str, Any]]) -> None:
        self.stack = stack
        self.queue = queue
        self.payload = payload
        self.requests: dict[str, list[jobs_pb2.JobRequest]] = {}  # sha -> requests published for it

    @property
    def greenness(self) -> Greenness:
        assert self.stack.integration.greenness is not None
        return self.stack.integration.greenness

    def commit(self, sha: str, parents: tuple[str, ...], files: tuple[str, ...], *jobs: str) -> None:
        self.stack.forgejo.commit(REPO, sha, parents, files)
        self.stack.forgejo.put_file(REPO, sha, workflow_text(*jobs))

    async def push(self, sha: str, delivery: str | None = None) -> tuple[int, Any]:
        body = self.payload("forgejo/push")
        body["after"], body["ref"] = sha, REF
        return await self.stack.deliver_forgejo("push", body, delivery=delivery or str(uuid.uuid4()))

    async def take(self) -> list[jobs_pb2.JobRequest]:
        taken = await self.queue.take()
        for r in taken:
            self.requests.setdefault(r.checkout.sha, []).append(r)
        return taken

    async def finish(self, sha: str, outcomes: dict[str, int], attempt: int = 1, reason: str = "") -> None:
        for r in self.requests[sha]:
            if r.key in outcomes:
                event = jobs_pb2.JobEvent(
                    schema_version=jobs_pb2.SCHEMA_VERSION_1, event_id=f"ev-{uuid.uuid4().hex}", job_id=r.job_id,
                    run_id=r.run_id, attempt=attempt, key=r.key, name=r.name, checkout=r.checkout,
                    state=outcomes[r.key], reason=reason, source=jobs_pb2.JOB_SOURCE_FORGE)  # type: ignore[arg-type]
                await self.greenness.recorder.handle(event)

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.stack.client.get(self.stack.url + path) as answer:
            if answer.content_type == "application/json":
                return answer.status, await answer.json()
            return answer.status, await answer.text()
