"""A fake Forgejo API: token auth, contents, commit statuses."""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.forges.base import FakeForge, json_body, json_error, load_schema, validation_error


@dataclass
class FakeForgejo(FakeForge):
    """``fixtures`` is ``.../fixtures/forge/forgejo``; ``token`` the only API token accepted."""

    fixtures: Path = Path()
    token: str = "forgejo-token"
    files: dict[tuple[str, str, str], str] = field(default_factory=dict)
    any_sha_files: dict[tuple[str, str], str] = field(default_factory=dict)
    statuses: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (repo, sha, body)

    def __post_init__(self) -> None:
        self._status = load_schema(self.fixtures / "schemas" / "create-status-option.json")
        self._contents_example = json.loads((self.fixtures / "contents-response.json").read_text())

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/repos/{owner}/{repo}/contents/{path:.+}", self._contents)
        app.router.add_post("/api/v1/repos/{owner}/{repo}/statuses/{sha}", self._create_status)

    def put_file(self, repo: str, sha: str, text: str, path: str = ".solstice/workflow.kdl") -> None:
        self.files[(repo, sha, path)] = text

    def statuses_of(self, context: str) -> list[str]:
        return [body["state"] for _, _, body in self.statuses if body.get("context") == context]

    def _auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"token {self.token}":
            return json_error(401, "token is required", url=f"{self.url}/api/swagger")
        return None

    async def _contents(self, request: web.Request) -> web.Response:
        refused = self._auth(request)
        if refused:
            return refused
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}"
        path = request.match_info["path"]
        ref = request.query.get("ref", "")
        text = self.files.get((repo, ref, path)) or self.any_sha_files.get((repo, path))
        if text is None:
            return web.json_response(
                {"errors": [f"object does not exist [id: {ref}, rel_path: {path}]"],
                 "message": "GetContentsOrList", "url": f"{self.url}/api/swagger"},
                status=404,
            )
        data = text.encode()
        answer = copy.deepcopy(self._contents_example)
        answer.update(
            content=base64.b64encode(data).decode(), size=len(data), path=path, name=path.rsplit("/", 1)[-1],
            last_commit_sha=ref,
        )
        return web.json_response(answer)

    async def _create_status(self, request: web.Request) -> web.Response:
        refused = self._auth(request)
        if refused:
            return refused
        body = await json_body(request)
        problem = validation_error(self._status, body)
        if problem:
            return json_error(422, problem, url=f"{self.url}/api/swagger")
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}"
        self.statuses.append((repo, request.match_info["sha"], body))
        return web.json_response({"id": len(self.statuses), "status": body["state"], **body}, status=201)
