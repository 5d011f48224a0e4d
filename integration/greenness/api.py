"""The read side of greenness over HTTP (mounted by ``Greenness.add_routes``).

    GET /api/v1/queues                                           every queue
    GET /api/v1/queues/<forge>/<owner>/<repo>/<ref>/last-green   ?project=NAME: last green, head, history, projects
    GET /api/v1/queues/<forge>/<owner>/<repo>/<ref>/commits      ?project=NAME&limit=N: newest verdicts
    GET /api/v1/queues/<forge>/<owner>/<repo>/<ref>/badge.svg    ?project=NAME: an SVG badge
    GET /api/v1/hooks/deliveries                                 ?hook=NAME&limit=N: the delivery log

``<ref>`` is the full ref (``refs/heads/main``) or a branch name (``main``).
Read-only and without secrets, like the out-of-tree results' read side.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from integration.errors import StoreError
from integration.greenness.badge import badge_svg
from integration.greenness.model import WHOLE, QueueKey, ScopeState
from integration.greenness.store import SqlGreennessStore

PREFIX = "/api/v1/queues"
_FORGES = ("github", "forgejo")
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_REF = re.compile(r"[A-Za-z0-9._/-]{1,250}")
MAX_LIMIT = 500


class BadRequest(Exception):
    """A path or query part that is not acceptable; the message is the answer's detail."""


def queue_from(request: web.Request) -> QueueKey:
    info = request.match_info
    forge, owner, repo, ref = info["forge"], info["owner"], info["repo"], info["ref"]
    if forge not in _FORGES:
        raise BadRequest(f"forge must be one of {', '.join(_FORGES)}")
    if not _PART.fullmatch(owner) or not _PART.fullmatch(repo):
        raise BadRequest("owner and repository must be 1-100 letters, digits, '.', '_' or '-'")
    if not _REF.fullmatch(ref) or ".." in ref or ref.startswith("/") or ref.endswith("/"):
        raise BadRequest("ref must be a ref name such as main or refs/heads/main")
    return QueueKey(forge, f"{owner}/{repo}", ref if ref.startswith("refs/") else f"refs/heads/{ref}")


def _project(request: web.Request) -> str:
    project = request.query.get("project", WHOLE)
    if project and not _PART.fullmatch(project):
        raise BadRequest("project must be a project name")
    return project


def _limit(request: web.Request, default: int = 50) -> int:
    text = request.query.get("limit", str(default))
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise BadRequest(f"limit must be a number from 1 to {MAX_LIMIT}")
    return int(text)


def state_json(state: ScopeState) -> dict[str, Any]:
    return {
        "queue": {"forge": state.queue.forge, "repo": state.queue.repo, "ref": state.queue.ref},
        "project": state.project,
        "green": state.green,
        "last_green": state.last_green.to_json() if state.last_green else None,
        "head": state.head.to_json() if state.head else None,
    }


class GreennessApi:
    def __init__(self, store: SqlGreennessStore) -> None:
        self.store = store

    def add_routes(self, app: web.Application) -> None:
        base = PREFIX + "/{forge}/{owner}/{repo}/{ref:.+}"
        app.router.add_get(PREFIX, self._guard(self._queues))
        app.router.add_get(base + "/last-green", self._guard(self._last_green))
        app.router.add_get(base + "/commits", self._guard(self._commits))
        app.router.add_get(base + "/badge.svg", self._guard(self._badge))
        app.router.add_get("/api/v1/hooks/deliveries", self._guard(self._deliveries))

    @staticmethod
    def _guard(handler: Any) -> Any:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)  # type: ignore[no-any-return]
            except BadRequest as err:
                return web.json_response({"result": "rejected", "detail": str(err)}, status=400)
            except StoreError as err:
                return web.json_response({"result": "try again", "detail": str(err)}, status=503)

        return guarded

    async def _queues(self, request: web.Request) -> web.Response:
        queues = await self.store.queues()
        return web.json_response({"queues": [{"forge": q.forge, "repo": q.repo, "ref": q.ref} for q in queues]})

    async def _last_green(self, request: web.Request) -> web.Response:
        queue, project = queue_from(request), _project(request)
        state = await self.store.scope_state(queue, project)
        if state.head is None and not await self.store.commits(queue, project, 1):
            return web.json_response({"result": "unknown", "detail": f"no commit of {queue} is known"}, status=404)
        doc = state_json(state)
        doc["history"] = [h.to_json() for h in await self.store.history(queue, project, _limit(request, 20))]
        if project == WHOLE:
            doc["projects"] = {p: state_json(await self.store.scope_state(queue, p))
                               for p in await self.store.projects(queue) if p != WHOLE}
        return web.json_response(doc)

    async def _commits(self, request: web.Request) -> web.Response:
        queue, project = queue_from(request), _project(request)
        commits = await self.store.commits(queue, project, _limit(request))
        return web.json_response({"commits": [c.to_json() for c in commits]})

    async def _badge(self, request: web.Request) -> web.Response:
        queue, project = queue_from(request), _project(request)
        state = await self.store.scope_state(queue, project)
        label = f"{queue.ref.removeprefix('refs/heads/')}{' ' + project if project else ''}"
        return web.Response(text=badge_svg(label, state), content_type="image/svg+xml",
                            headers={"Cache-Control": "no-cache, max-age=0"})

    async def _deliveries(self, request: web.Request) -> web.Response:
        hook = request.query.get("hook", "")
        if hook and not _PART.fullmatch(hook):
            raise BadRequest("hook must be a hook name")
        deliveries = await self.store.deliveries(hook, _limit(request))
        return web.json_response({"deliveries": [d.to_json() for d in deliveries]})
