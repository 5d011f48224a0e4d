"""What both fake forges share: the server, call recording, fault injection, schema checks."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
from aiohttp import web


def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in value


_NOT_JSON = object()  # a request body that did not parse

FORMATS = jsonschema.FormatChecker()
FORMATS.checks("date-time")(_is_datetime)


def load_schema(path: Path) -> jsonschema.Draft7Validator:
    schema = json.loads(path.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=FORMATS)


@dataclass(frozen=True)
class Call:
    """One request the fake received (also those it refused)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int = 0


@dataclass
class Fault:
    """Answer the next ``count`` matching calls with ``status`` after ``delay`` s (status 0: answer normally)."""

    count: int
    status: int = 502
    path_contains: str = ""
    method: str = ""
    delay: float = 0.0


@dataclass
class FakeForge:
    """Base: owns the aiohttp runner; subclasses add routes in ``routes``."""

    calls: list[Call] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    url: str = ""

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> str:
        app = web.Application(middlewares=[self._middleware])
        self.routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        await self._runner.cleanup()

    def fail_next(self, count: int, status: int = 502, path_contains: str = "", method: str = "") -> None:
        self.faults.append(Fault(count, status, path_contains, method))

    def hang_next(self, count: int, delay: float, path_contains: str = "", method: str = "") -> None:
        self.faults.append(Fault(count, 504, path_contains, method, delay))

    def slow_next(self, count: int, delay: float, path_contains: str = "", method: str = "") -> None:
        """Answer the next ``count`` matching calls normally, but only after ``delay`` s."""
        self.faults.append(Fault(count, 0, path_contains, method, delay))

    def calls_to(self, method: str, contains: str = "") -> list[Call]:
        """Calls with ``method`` whose path contains ``contains`` and that were answered 2xx."""
        return [c for c in self.calls if c.method == method and contains in c.path and 200 <= c.status < 300]

    def _fault_for(self, request: web.Request) -> Fault | None:
        for fault in self.faults:
            if fault.count <= 0:
                continue
            if fault.path_contains and fault.path_contains not in request.path:
                continue
            if fault.method and fault.method != request.method:
                continue
            fault.count -= 1
            return fault
        return None

    def check_body(self, request: web.Request, raw: bytes, body: Any) -> web.Response | None:
        """Refuse a body the route does not take; routes that take one validate it against its schema.

        Every request passes here, so no body reaches a handler unchecked: a
        GET with a body, or a body that is not JSON, is refused as the forge would.
        """
        if not raw:
            return None
        if request.method in ("GET", "HEAD", "DELETE"):
            return json_error(400, f"{request.method} {request.path} takes no request body")
        if body is _NOT_JSON:
            return json_error(400, "Problems parsing JSON")
        return None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = _NOT_JSON
        fault = self._fault_for(request)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
        refused = self.check_body(request, raw, body)
        if fault is not None and fault.status:
            response: web.StreamResponse = web.json_response({"message": "Server Error (injected)"}, status=fault.status)
        elif refused is not None:
            response = refused
        else:
            try:
                response = await handler(request)
            except web.HTTPException as err:
                response = err
        if body is _NOT_JSON:
            body = raw
        self.calls.append(
            Call(request.method, request.path, dict(request.query), dict(request.headers), body, response.status)
        )
        return response


async def json_body(request: web.Request) -> Any:
    """The decoded JSON body (None when there is none; the middleware already refused non-JSON)."""
    raw = await request.read()
    return json.loads(raw) if raw else None


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"message": message, **extra}, status=status)


def validation_error(validator: jsonschema.Draft7Validator, body: Any) -> str | None:
    """The schema errors of ``body``, or None if it is valid."""
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    if not errors:
        return None
    return "; ".join(f"{'/'.join(map(str, e.path)) or '(body)'}: {e.message}" for e in errors)
