"""The HTTP server of the webhooks and the single node's pages: deadlines, a connection cap, safe headers.

A client that never finishes its request must not hold a connection, and
one client must not hold them all:

* **Header deadline** (``header_timeout``, 10 s): a connection whose request
  head (request line and headers) has not fully arrived this long after it
  opened, or after the previous answer, is closed. This is aiohttp's own
  ``keepalive_timeout``, which from aiohttp 3.14.4 also covers a connection's
  first request; bytes trickling in do not extend it.
* **Body deadline** (``body_timeout``, 60 s): a request whose body has not
  fully arrived this long after its head gets 408 and the connection is
  closed (``harden``'s middleware; aiohttp has no such timeout).
* **Connections per client** (``max_connections_per_client``, 32): one more
  from the same address is answered 503 and closed at once (``GuardedSite``).
  Forges do not redeliver a refused webhook, so keep it above the deliveries
  one forge host sends at once. Behind a reverse proxy every client has the
  proxy's address: let the proxy enforce per-client limits and set this to 0
  (no cap).

Every answer of the application carries ``X-Content-Type-Options: nosniff``
(``harden``), so a browser never runs a job log or an error text as a page.

    HttpLimits                         the settings (section ``http``)
    harden(app, limits)                nosniff on every answer, the body deadline
    app_runner(app, limits, **kw)      an AppRunner with the header deadline
    GuardedSite(runner, limits, ...)   a listening site with the per-client cap
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from common.config import Seconds
from common.errors import ConfigError, SolsticeError

log = logging.getLogger(__name__)

NOSNIFF = ("X-Content-Type-Options", "nosniff")


@dataclass(frozen=True)
class HttpLimits:
    """How long a client may take to send a request, and how many connections it may hold."""

    header_timeout: Seconds = Seconds(10)  # request line + headers, from connect or the previous answer
    body_timeout: Seconds = Seconds(60)  # the body, from the end of the headers
    max_connections_per_client: int = 32  # per remote address; 0 = no cap (a reverse proxy caps instead)

    def __post_init__(self) -> None:
        if not self.header_timeout > 0 or not self.body_timeout > 0:
            raise ConfigError("http.header_timeout and http.body_timeout must be more than 0 seconds")
        if self.max_connections_per_client < 0:
            raise ConfigError("http.max_connections_per_client must be 0 (no cap) or more")


class BodyTimeout(SolsticeError):
    """The request body did not arrive within ``http.body_timeout``."""


async def _nosniff(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault(*NOSNIFF)


def _body_deadline(limit: float) -> Middleware:
    @web.middleware
    async def body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists:
            return await handler(request)

        def cut() -> None:
            if not request.content.is_eof():  # a body fully arrived may be handled as long as it takes
                request.content.set_exception(BodyTimeout(f"the request body did not arrive within {limit:g}s"))

        timer = asyncio.get_running_loop().call_later(limit, cut)
        try:
            return await handler(request)
        except BodyTimeout as err:
            log.warning("slow request body cut",
                        extra={"fields": {"remote": request.remote or "", "path": request.path}})
            response = web.Response(status=408, text=f"{err}\n")
            response.force_close()
            return response
        finally:
            timer.cancel()

    return body_deadline


def harden(app: web.Application, limits: HttpLimits) -> None:
    """Give every answer of ``app`` ``nosniff`` and every request body ``limits.body_timeout``."""
    app.on_response_prepare.append(_nosniff)
    app.middlewares.append(_body_deadline(limits.body_timeout))


def app_runner(app: web.Application, limits: HttpLimits, **kwargs: Any) -> web.AppRunner:
    """An ``AppRunner`` whose connections must deliver each request head within ``limits.header_timeout``."""
    return web.AppRunner(app, keepalive_timeout=float(limits.header_timeout), **kwargs)


def _refusal(limit: int) -> bytes:
    text = f"too many connections from your address (at most {limit} at once)\n".encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"{NOSNIFF[0]}: {NOSNIFF[1]}\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: {len(text)}\r\n\r\n"
    )
    return head.encode() + text


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, admitted only while its client is under the cap."""

    def __init__(self, inner: asyncio.Protocol, site: GuardedSite) -> None:
        self._inner = inner
        self._site = site
        self._client: str | None = None  # set once admitted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")
        if not self._site.admit(client):
            log.warning("connection refused: too many from one client", extra={"fields": {"remote": client}})
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(_refusal(self._site.limits.max_connections_per_client))
            transport.close()
            return
        self._client = client
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._client is not None:
            self._site.release(self._client)
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._client is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._client is not None else None

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class GuardedSite(web.BaseSite):
    """A listening site (a bound ``sock``, or ``host``/``port``) whose clients each get at most
    ``limits.max_connections_per_client`` connections at once."""

    def __init__(self, runner: web.BaseRunner, limits: HttpLimits, *, sock: socket.socket | None = None,
                 host: str = "127.0.0.1", port: int = 0, backlog: int = 128) -> None:
        super().__init__(runner, backlog=backlog)
        self.limits = limits
        self._sock = sock
        self._host = host
        self._port = port
        self.open: Counter[str] = Counter()  # client address -> connections held

    @property
    def name(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    @property
    def address(self) -> tuple[str, int]:
        """The address bound (the real port when 0 was asked for)."""
        sockets = getattr(self._server, "sockets", None)
        if sockets:
            host, port = sockets[0].getsockname()[:2]
            return str(host), int(port)
        return self._host, self._port

    def admit(self, client: str) -> bool:
        cap = self.limits.max_connections_per_client
        if cap and self.open[client] >= cap:
            return False
        self.open[client] += 1
        return True

    def release(self, client: str) -> None:
        self.open[client] -= 1
        if self.open[client] <= 0:
            del self.open[client]

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None

        def protocol() -> asyncio.Protocol:
            return _Counted(server(), self)

        loop = asyncio.get_running_loop()
        if self._sock is not None:
            self._server = await loop.create_server(protocol, sock=self._sock, backlog=self._backlog)
        else:
            self._server = await loop.create_server(
                protocol, self._host, self._port, reuse_address=True, backlog=self._backlog)
