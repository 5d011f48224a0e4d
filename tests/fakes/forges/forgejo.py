"""A fake Forgejo API: token auth, contents, commit statuses."""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from tests.fakes.forges.base import FakeForge, json_error, load_schema


@dataclass
class FakeForgejo(FakeForge):
    """``fixtures`` is ``.../fixtures/forge/forgejo``; ``token`` the only API token accepted."""

    fixtures: Path = Path()
    token: str = "forgejo-token"

    def __post_init__(self) -> None:
        self._status = load_schema(self.fixtures / "schemas" / "create-status-option.json")
        self._contents_example = json.loads((self.fixtures / "contents-response.json").read_text())

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/repos/{owner}/{repo}/contents/{path:.+}", self.authed(self._contents))
        app.router.add_get("/api/v1/repos/{owner}/{repo}/branches/{branch:.+}", self.authed(self._branch))
        app.router.add_post("/api/v1/repos/{owner}/{repo}/statuses/{sha}", self.authed(self._create_status))
        app.router.add_get("/api/v1/repos/{owner}/{repo}/compare/{basehead}", self.authed(self._compare))

    def _api_commit(self, repo: str, sha: str) -> dict[str, object]:
        parents, files = self.graph[(repo, sha)]
        url = f"{self.url}/api/v1/repos/{repo}/git/commits/{sha}"
        return {"sha": sha, "url": url, "html_url": f"{self.url}/{repo}/commit/{sha}",
                "created": "2024-01-01T00:00:00Z",
                "commit": {"message": f"commit {sha[:7]}", "url": url},
                "parents": [{"sha": p, "url": f"{self.url}/api/v1/repos/{repo}/git/commits/{p}"} for p in parents],
                "files": [{"filename": f, "status": "modified"} for f in files]}

    async def _compare(self, request: web.Request) -> web.Response:
        """Forgejo's ``GET /repos/{owner}/{repo}/compare/{base}...{head}``: the commits of head not in base."""
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}"
        base, sep, head = request.match_info["basehead"].partition("...")
        if not sep or (repo, base) not in self.graph or (repo, head) not in self.graph:
            return json_error(404, "GetCommit", url=f"{self.url}/api/swagger")
        shown = sorted(self._ancestors(repo, head) - self._ancestors(repo, base))
        return web.json_response({"total_commits": len(shown), "commits": [self._api_commit(repo, c) for c in shown]})

    def statuses_of(self, context: str) -> list[str]:
        return [body["state"] for _, _, body in self.statuses if body.get("context") == context]

    def auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"token {self.token}":
            return json_error(401, "token is required", url=f"{self.url}/api/swagger")
        return None

    async def _branch(self, request: web.Request) -> web.Response:
        # Forgejo's Branch object, trimmed to what a client reads (name, commit.id, protected).
        repo, branch, sha = self.requested_branch(request)
        if sha is None:
            return web.json_response({"errors": [f"branch does not exist [name: {branch}]"], "message": "GetBranch",
                                      "url": f"{self.url}/api/swagger"}, status=404)
        return web.json_response({"name": branch, "protected": False,
                                  "commit": {"id": sha, "url": f"{self.url}/{repo}/commit/{sha}"}})

    async def _contents(self, request: web.Request) -> web.Response:
        wanted = self.requested_file(request)
        if wanted.text is None:
            return web.json_response(
                {"errors": [f"object does not exist [id: {wanted.ref}, rel_path: {wanted.path}]"],
                 "message": "GetContentsOrList", "url": f"{self.url}/api/swagger"},
                status=404,
            )
        data = wanted.data
        answer = copy.deepcopy(self._contents_example)
        answer.update(
            content=base64.b64encode(data).decode(), size=len(data), path=wanted.path,
            name=wanted.path.rsplit("/", 1)[-1], last_commit_sha=wanted.ref,
        )
        return web.json_response(answer)

    async def _create_status(self, request: web.Request) -> web.Response:
        taken = await self.take_status(
            request, self._status, lambda problem: json_error(422, problem, url=f"{self.url}/api/swagger")
        )
        if isinstance(taken, web.Response):
            return taken
        return web.json_response({**taken, "status": taken["state"]}, status=201)
