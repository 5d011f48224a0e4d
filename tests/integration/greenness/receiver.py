"""A hook receiver on loopback: checks each delivery's signature, counts deliveries by id, can fail on purpose."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from integration.signature import verify
from tests.fakes.serving import LoopbackFake


@dataclass
class HookReceiver(LoopbackFake):
    """Answers 500 to the next ``fail_next`` deliveries; ``accepted`` holds each delivery it took (200), in order."""

    secret: str = "hook-secret"
    fail_next: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)  # delivery id -> posts seen
    bad_signatures: int = 0

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        return app

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        signature = request.headers.get("X-Solstice-Signature-256", "").removeprefix("sha256=")
        if not verify(self.secret, body, signature):
            self.bad_signatures += 1
            return web.json_response({"error": "bad signature"}, status=401)
        doc = json.loads(body)
        delivery = request.headers["X-Solstice-Delivery"]
        assert doc["delivery"] == delivery and str(doc["timestamp"]) == request.headers["X-Solstice-Timestamp"]
        self.attempts[delivery] = self.attempts.get(delivery, 0) + 1
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"error": "deploy tool busy"}, status=500)
        if any(d["delivery"] == delivery for d in self.accepted):
            return web.json_response({"duplicate": True})  # a receiver drops repeats by id; counted as a bug below
        self.accepted.append(doc)
        return web.json_response({"ok": True})
