"""``GET /metrics``: this process's metrics in the Prometheus text format.

``MetricsEndpoint`` serves ``common.metrics.REGISTRY`` plus, read when
scraped, the families of its ``sources`` (async callables: the state
store's gauges, ``orchestrator.metrics.store_families``). A source that
fails is left out of that scrape and counted in
``solstice_metrics_source_errors_total``, so a store outage never hides the
process's own metrics. ``serve_metrics`` runs it on a listener of its own
(a node's ``metrics.listen``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.metrics_core import Metric

from common.errors import SolsticeError
from common.metrics import REGISTRY

log = logging.getLogger(__name__)

Source = Callable[[], Awaitable[Iterable[Metric]]]
SOURCE_ERRORS = Counter("solstice_metrics_source_errors", "Scrapes that could not read one of their sources.",
                        registry=REGISTRY)


class MetricsListenError(SolsticeError):
    """The metrics listener cannot be bound."""


class _Fixed:
    """A collector of families read before the scrape (prometheus_client collectors are synchronous)."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


class MetricsEndpoint:
    """The ``/metrics`` handler; ``sources`` may be set later (``add_source``), e.g. once a store is open."""

    def __init__(self, sources: Sequence[Source] = ()) -> None:
        self.sources: list[Source] = list(sources)

    def add_source(self, source: Source) -> None:
        self.sources.append(source)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/metrics", self.handle)

    async def render(self) -> bytes:
        families: list[Metric] = []
        for source in list(self.sources):
            try:
                families.extend(await source())
            except SolsticeError as err:
                SOURCE_ERRORS.inc()
                log.warning("a metrics source failed: %s", err)
        extra = CollectorRegistry(auto_describe=False)
        extra.register(_Fixed(families))
        return generate_latest(REGISTRY) + generate_latest(extra)

    async def handle(self, request: web.Request) -> web.Response:
        response = web.Response(body=await self.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response


@asynccontextmanager
async def serve_metrics(endpoint: MetricsEndpoint, host: str, port: int) -> AsyncIterator[str]:
    """Serve ``endpoint`` at ``http://host:port/metrics`` for the block; yields the URL bound."""
    app = web.Application()
    endpoint.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as err:
            raise MetricsListenError(f"cannot serve metrics on {host}:{port}: {err.strerror or err}") from err
        bound = runner.addresses[0]
        yield f"http://{bound[0]}:{bound[1]}/metrics"
    finally:
        await runner.cleanup()
