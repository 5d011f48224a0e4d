"""The webhook endpoints: ``POST /webhooks/github`` and ``POST /webhooks/forgejo``.

Order of checks: the forge is configured (404 "forge not configured" without
its webhook secret), size (413, from Content-Length and again while streaming,
so an oversize body is never read whole), signature (401, nothing queued),
JSON (400, also for a body nested deeper than the parser allows, naming
where); then ``WebhookService`` decides. Forgejo deliveries are accepted
with Forgejo, Gitea or Gogs headers, and with the GitHub-style ones Forgejo
sends too.
"""

from __future__ import annotations

import json
import logging
import re

from aiohttp import web

from common import metrics
from integration.events import Delivery, Forge
from integration.service import WebhookService
from integration.signature import forgejo_signature, github_signature, verify

log = logging.getLogger(__name__)

SERVICE_KEY: web.AppKey[WebhookService] = web.AppKey("solstice_webhook_service", WebhookService)
RESULT_KEY: web.ResponseKey[str] = web.ResponseKey("solstice_result", str)  # the answer's result, for the metric

_EVENT_HEADERS = {
    Forge.GITHUB: ("X-GitHub-Event",),
    Forge.FORGEJO: ("X-Forgejo-Event", "X-Gitea-Event", "X-Gogs-Event", "X-GitHub-Event"),
}
_DELIVERY_HEADERS = {
    Forge.GITHUB: ("X-GitHub-Delivery",),
    Forge.FORGEJO: ("X-Forgejo-Delivery", "X-Gitea-Delivery", "X-Gogs-Delivery", "X-GitHub-Delivery"),
}
_SIGNATURES = {Forge.GITHUB: github_signature, Forge.FORGEJO: forgejo_signature}
# How each forge is named to people, and the setting that turns its webhooks on.
FORGE_NAMES = {Forge.GITHUB: "GitHub", Forge.FORGEJO: "Forgejo"}
SECRET_SETTINGS = {Forge.GITHUB: "SOLSTICE_GITHUB_WEBHOOK_SECRET", Forge.FORGEJO: "SOLSTICE_FORGEJO_WEBHOOK_SECRET"}

# Forge payloads nest about ten levels; past this the error names where.
DEPTH_SHOWN = 64
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}:,]')


def _first(request: web.Request, names: tuple[str, ...]) -> str:
    for name in names:
        value = request.headers.get(name)
        if value:
            return value.strip()
    return ""


def _error(status: int, result: str, detail: str) -> web.Response:
    response = web.json_response({"result": result, "detail": detail}, status=status)
    response[RESULT_KEY] = result
    return response


def _too_large(cap: int) -> web.Response:
    response = _error(413, "payload too large", f"webhook bodies are limited to {cap} bytes")
    # Close instead of draining the rest of an oversize body.
    response.force_close()
    return response


def deep_path(body: bytes, limit: int = DEPTH_SHOWN) -> str | None:
    """The field path (``a.b[3].c``) at which ``body``'s JSON first nests past ``limit`` levels, or None."""
    stack: list[list[object]] = []  # [key or index] per open container; key None until read
    last = b""
    for match in _JSON_TOKEN.finditer(body):
        token = match.group()
        if token in (b"{", b"["):
            stack.append([None] if token == b"{" else [0])
            if len(stack) > limit:
                path = "".join(
                    f"[{key}]" if isinstance(key, int) else f".{key}" if key is not None else ""
                    for (key,) in stack[:-1]).lstrip(".") or "(top level)"
                return path if len(path) <= 120 else path[:117] + "..."
        elif token in (b"}", b"]"):
            if stack:
                stack.pop()
        elif token == b":" and stack:
            stack[-1][0] = json.loads(last)[:40] if last else ""
        elif token == b"," and stack and isinstance(stack[-1][0], int):
            stack[-1][0] += 1
        else:
            last = token
    return None


async def read_capped(request: web.Request, cap: int) -> bytes | None:
    """The body, or None as soon as more than ``cap`` bytes arrived."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def receive(request: web.Request, forge: Forge) -> web.Response:
    """Handle one delivery for ``forge``."""
    service = request.app[SERVICE_KEY]
    if not service.secret(forge):
        # Not a signature problem: no secret could ever match, so say what to set.
        log.warning("webhook refused: %s is not configured", FORGE_NAMES[forge],
                    extra={"fields": {"forge": forge.value, "remote": request.remote or ""}})
        return _error(404, "forge not configured",
                      f"{FORGE_NAMES[forge]} webhooks are not configured on this server: "
                      f"set {SECRET_SETTINGS[forge]} and restart it")
    cap = service.settings.max_body_bytes
    if request.content_length is not None and request.content_length > cap:
        log.warning("oversize webhook refused",
                    extra={"fields": {"forge": forge.value, "length": request.content_length}})
        return _too_large(cap)
    body = await read_capped(request, cap)
    if body is None:
        log.warning("oversize webhook refused while reading", extra={"fields": {"forge": forge.value}})
        return _too_large(cap)
    if not verify(service.secret(forge), body, _SIGNATURES[forge](request.headers)):
        log.warning(
            "webhook with a missing or wrong signature refused",
            extra={"fields": {"forge": forge.value, "remote": request.remote or ""}},
        )
        return _error(401, "bad signature", "the signature is missing or does not match the webhook secret")
    event = _first(request, _EVENT_HEADERS[forge])
    if not event:
        return _error(400, "missing event", "the delivery names no event type")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        return _error(400, "malformed JSON", f"the body is not JSON: {err}")
    except RecursionError:
        where = deep_path(body)
        detail = "the body nests deeper than the JSON parser allows" + (
            f" (past {DEPTH_SHOWN} levels at {where})" if where else "")
        return _error(400, "malformed JSON", detail)
    if not isinstance(payload, dict):
        return _error(400, "malformed JSON", "the body must be a JSON object")
    delivery = Delivery(forge, event, _first(request, _DELIVERY_HEADERS[forge]))
    outcome = await service.handle(delivery, payload)
    if service.relay is not None and not 400 <= outcome.status < 500:
        # Out-of-tree CI, after the upstream's own build: records dispatches, never raises, never slows it long.
        await service.relay.offer(delivery, payload)
    response = web.json_response(outcome.to_json(), status=outcome.status)
    response[RESULT_KEY] = outcome.result
    return response


async def _counted(request: web.Request, forge: Forge) -> web.Response:
    response = await receive(request, forge)
    metrics.webhook_answered(forge.value, str(response.get(RESULT_KEY, response.status)))
    return response


async def _github(request: web.Request) -> web.Response:
    return await _counted(request, Forge.GITHUB)


async def _forgejo(request: web.Request) -> web.Response:
    return await _counted(request, Forge.FORGEJO)


def add_webhook_routes(app: web.Application, service: WebhookService, prefix: str = "/webhooks") -> None:
    """Mount ``POST {prefix}/github`` and ``POST {prefix}/forgejo`` on ``app``, served by ``service``."""
    app[SERVICE_KEY] = service
    app.router.add_post(f"{prefix}/github", _github)
    app.router.add_post(f"{prefix}/forgejo", _forgejo)
