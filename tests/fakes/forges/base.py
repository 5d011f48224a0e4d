"""What both fake forges share: the server, call recording, fault injection, schema checks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
from aiohttp import web

from tests.fakes.serving import LoopbackFake


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
    raw_path: str = ""  # as sent, percent-encoding kept


@dataclass
class Fault:
    """Answer the next ``count`` matching calls with ``status`` after ``delay`` s (status 0: answer normally).

    ``headers``/``message``: of the fault's answer (a rate limit's). ``drop``:
    do the call (status 0), then cut the connection instead of answering, as a
    proxy or network failure after the forge acted would.
    """

    count: int
    status: int = 502
    path_contains: str = ""
    method: str = ""
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "Server Error (injected)"
    drop: bool = False
    late: float = 0.0  # do the call, then wait this long before answering


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class FileRequest:
    """A contents call: which file of which repository at which ref, and its text if the fake has it."""

    repo: str
    path: str
    ref: str
    text: str | bytes | None

    @property
    def data(self) -> bytes:
        assert self.text is not None
        return self.text if isinstance(self.text, bytes) else self.text.encode()


@dataclass
class FakeForge(LoopbackFake):
    """Base: owns the aiohttp runner, the repositories' files and the statuses posted.

    Subclasses add routes in ``routes`` and say in ``auth`` whether a request
    may use the API (a ``Response`` refuses it); routes wrapped in ``authed`` pass there first.
    """

    calls: list[Call] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    url: str = ""
    files: dict[tuple[str, str, str], str | bytes] = field(default_factory=dict)  # (repo, sha, path) -> text
    any_sha_files: dict[tuple[str, str], str] = field(default_factory=dict)  # (repo, path) -> text at every sha
    statuses: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (repo, sha, body)
    branches: dict[tuple[str, str], str] = field(default_factory=dict)  # (repo, branch) -> head sha
    arrived: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request, on arrival
    hooks: list[tuple[str, str, Callable[[], Awaitable[None] | None]]] = field(default_factory=list)
    # The commit graph compare and branch/ref endpoints answer from (``commit``, ``set_branch``).
    graph: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def auth(self, request: web.Request) -> web.Response | None:
        raise NotImplementedError

    def authed(self, handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            refused = self.auth(request)
            return refused if refused is not None else await handler(request)

        return checked

    def requested_branch(self, request: web.Request) -> tuple[str, str, str | None]:
        """(repo, branch, head sha or None) of a ``.../branches/{branch}`` call."""
        repo, branch = repo_of(request), request.match_info["branch"]
        return repo, branch, self.branches.get((repo, branch))

    def commit(self, repo: str, sha: str, parents: tuple[str, ...] = (), files: tuple[str, ...] = ()) -> None:
        """Add commit ``sha`` of ``repo`` with its parents and the paths it changed."""
        self.graph[(repo, sha)] = (parents, files)

    def set_branch(self, repo: str, branch: str, sha: str) -> None:
        self.branches[(repo, branch)] = sha

    def _ancestors(self, repo: str, sha: str) -> set[str]:
        seen: set[str] = set()
        todo = [sha]
        while todo:
            current = todo.pop()
            if current in seen or (repo, current) not in self.graph:
                continue
            seen.add(current)
            todo.extend(self.graph[(repo, current)][0])
        return seen

    def put_file(self, repo: str, sha: str, text: str | bytes, path: str = ".solstice/workflow.kdl") -> None:
        self.files[(repo, sha, path)] = text

    def requested_file(self, request: web.Request) -> FileRequest:
        """The file a ``/repos/{owner}/{repo}/contents/{path}?ref=`` call asks for."""
        repo, path, ref = repo_of(request), request.match_info["path"], request.query.get("ref", "")
        return FileRequest(repo, path, ref, self.files.get((repo, ref, path)) or self.any_sha_files.get((repo, path)))

    async def take_status(
        self, request: web.Request, validator: jsonschema.Draft7Validator, invalid: Callable[[str], web.Response]
    ) -> web.Response | dict[str, Any]:
        """Record a ``/repos/{owner}/{repo}/statuses/{sha}`` body; ``invalid(problem)`` answers a bad one."""
        body = await json_body(request)
        problem = validation_error(validator, body)
        if problem:
            return invalid(problem)
        self.statuses.append((repo_of(request), request.match_info["sha"], body))
        return {"id": len(self.statuses), **body}

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        self.routes(app)
        return app

    def fail_next(self, count: int, status: int = 502, path_contains: str = "", method: str = "") -> None:
        self.faults.append(Fault(count, status, path_contains, method))

    def hang_next(self, count: int, delay: float, path_contains: str = "", method: str = "") -> None:
        self.faults.append(Fault(count, 504, path_contains, method, delay))

    def slow_next(self, count: int, delay: float, path_contains: str = "", method: str = "") -> None:
        """Answer the next ``count`` matching calls normally, but only after ``delay`` s."""
        self.faults.append(Fault(count, 0, path_contains, method, delay))

    def on_next(self, method: str, path_contains: str, hook: Callable[[], Awaitable[None] | None]) -> None:
        """Run ``hook`` once, when the next matching request arrives (before it is handled)."""
        self.hooks.append((method, path_contains, hook))

    def late_next(self, count: int, delay: float, path_contains: str = "", method: str = "") -> None:
        """Carry out the next ``count`` matching calls at once, but answer only ``delay`` s later."""
        self.faults.append(Fault(count, 0, path_contains, method, late=delay))

    def drop_next(self, count: int, path_contains: str = "", method: str = "") -> None:
        """Carry out the next ``count`` matching calls, then cut the connection instead of answering."""
        self.faults.append(Fault(count, 0, path_contains, method, drop=True))

    def rate_limit_next(self, count: int, *, status: int = 403, retry_after: float | None = None,
                        reset_in: float | None = None, path_contains: str = "", method: str = "") -> None:
        """Refuse the next ``count`` matching calls as GitHub's rate limits do (REST API docs, "Rate limits").

        ``reset_in``: a primary limit (``x-ratelimit-remaining: 0``, ``x-ratelimit-reset``);
        otherwise a secondary limit, with ``retry-after`` when given.
        """
        headers = {}
        if reset_in is not None:
            headers = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0", "x-ratelimit-used": "5000",
                       "x-ratelimit-reset": str(int(time.time() + reset_in + 0.999))}
            message = "API rate limit exceeded for installation ID 1."
        else:
            message = ("You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                       "If you reach out to GitHub Support for help, please include the request ID 0000:0000.")
        if retry_after is not None:
            headers["retry-after"] = str(int(retry_after))
        self.faults.append(Fault(count, status, path_contains, method, headers=headers, message=message))

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
        self.arrived.append((request.method, request.path))
        for hook in list(self.hooks):
            method, contains, call = hook
            if method == request.method and contains in request.path:
                self.hooks.remove(hook)
                result = call()
                if result is not None:
                    await result
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
            response: web.StreamResponse = web.json_response(
                {"message": fault.message, "documentation_url": "https://docs.github.com/rest"},
                status=fault.status, headers=fault.headers)
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
            Call(request.method, request.path, dict(request.query), dict(request.headers), body, response.status,
                 request.raw_path.partition("?")[0])
        )
        if fault is not None and fault.drop and request.transport is not None:
            request.transport.abort()  # done, but the caller never hears the answer
        if fault is not None and fault.late:
            await asyncio.sleep(fault.late)
        return response


async def json_body(request: web.Request) -> Any:
    """The decoded JSON body (None when there is none; the middleware already refused non-JSON)."""
    raw = await request.read()
    return json.loads(raw) if raw else None


def repo_of(request: web.Request) -> str:
    """``owner/repo`` of a ``/repos/{owner}/{repo}/...`` route."""
    return f"{request.match_info['owner']}/{request.match_info['repo']}"


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"message": message, **extra}, status=status)


def validation_error(validator: jsonschema.Draft7Validator, body: Any) -> str | None:
    """The schema errors of ``body``, or None if it is valid."""
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    if not errors:
        return None
    return "; ".join(f"{'/'.join(map(str, e.path)) or '(body)'}: {e.message}" for e in errors)
