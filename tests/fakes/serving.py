"""Serve a fake's aiohttp application on a free loopback port."""

from __future__ import annotations

from typing import Self

from aiohttp import web


async def serve_on_loopback(app: web.Application) -> tuple[web.AppRunner, str]:
    """Start ``app`` on 127.0.0.1 and an ephemeral port; the runner (clean it up) and the base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


class LoopbackFake:
    """A fake served on loopback: ``make_app`` builds its application; ``url`` is set once started."""

    url: str

    def make_app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> str:
        self._runner, self.url = await serve_on_loopback(self.make_app())
        return self.url

    async def close(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
