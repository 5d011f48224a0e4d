"""A git server over smart HTTP (the real ``git http-backend`` as CGI) whose answers a test can break.

``GitHttpServer(root)`` serves the repositories under ``root`` at
``{url}/<name>``. Faults, for the runner's checkout: ``fail_next(n, status)``
answers the next ``n`` requests with an HTTP error, ``reset_next(n)`` cuts
their connections without an answer. ``BlackHole`` accepts connections and
never answers (a stalled network path).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aiohttp import web

from tests.fakes.serving import serve_on_loopback


class GitHttpServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = ""
        self.requests = 0
        self._failures: list[int] = []  # statuses to answer, in order; 0 = cut the connection

    def fail_next(self, count: int, status: int = 503) -> None:
        self._failures.extend([status] * count)

    def reset_next(self, count: int) -> None:
        self._failures.extend([0] * count)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner, self.url = await serve_on_loopback(app)
        return self.url

    async def close(self) -> None:
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = await request.read()
        if self._failures:
            status = self._failures.pop(0)
            if status == 0:
                assert request.transport is not None
                request.transport.abort()
                return web.Response(status=500)  # never reaches the client
            return web.Response(status=status, text="injected failure\n")
        env = {
            "PATH": os.environ.get("PATH", ""),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": "/" + request.match_info["path"],
            "REQUEST_METHOD": request.method,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
        }
        for header in ("Content-Encoding", "Git-Protocol"):
            if header in request.headers:
                env["HTTP_" + header.upper().replace("-", "_")] = request.headers[header]
        if "Git-Protocol" in request.headers:
            env["GIT_PROTOCOL"] = request.headers["Git-Protocol"]
        proc = await asyncio.create_subprocess_exec(
            "git", "http-backend", env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(body)
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers[name] = value.strip()
        if proc.returncode != 0 and not out:
            return web.Response(status=500, text=err.decode(errors="replace"))
        return web.Response(status=status, body=payload, headers=headers)


class BlackHole:
    """A TCP listener that accepts connections and never answers (nor closes them)."""

    def __init__(self) -> None:
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)

    async def close(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
