"""The integration's own aiohttp application (multi-host): webhooks, ``/healthz``, ``/metrics`` and
(with ``dashboard.store_url``) the dashboard.

The single-node server mounts the same routes into its app with
``Integration.add_routes`` (or ``integration.webhooks.add_webhook_routes``).
"""

from __future__ import annotations

from aiohttp import web

from common.metrics.http import MetricsEndpoint
from dashboard.app import Dashboard
from integration.httpserver import HttpLimits, harden
from integration.service import WebhookService
from integration.webhooks import add_webhook_routes


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(service: WebhookService, limits: HttpLimits = HttpLimits(), metrics: MetricsEndpoint | None = None,
             dashboard: Dashboard | None = None) -> web.Application:
    """An application serving ``POST /webhooks/github``, ``POST /webhooks/forgejo``, ``GET /healthz``,
    ``GET /metrics`` and, when given, the dashboard's pages."""
    # Bodies are streamed with our own cap; aiohttp's limit only guards read().
    app = web.Application(client_max_size=service.settings.max_body_bytes + 1)
    harden(app, limits)
    add_webhook_routes(app, service)
    app.router.add_get("/healthz", _healthz)
    (metrics or MetricsEndpoint()).add_routes(app)
    if dashboard is not None:
        dashboard.add_routes(app)
    return app
