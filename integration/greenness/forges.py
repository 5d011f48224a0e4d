"""What greenness asks a forge: the paths changed between two commits, and the head of a ref (polling).

Forgejo / Gitea: ``GET /repos/{o}/{r}/compare/{base}...{head}`` lists the
commits of ``head`` not in ``base`` with their files; ``base`` is an
ancestor of ``head`` when the reverse comparison lists no commit. A
branch's head: ``GET /repos/{o}/{r}/branches/{name}``.

GitHub: ``GET /repos/{o}/{r}/compare/{base}...{head}`` says ``status``
(ahead / identical: an ancestor; behind / diverged: not) and lists at most
300 files. A ref's head: ``GET /repos/{o}/{r}/commits/{ref}``, as the App's
installation on the repository (``GET /repos/{o}/{r}/installation`` with the App's JWT).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from integration.errors import ForgeUnavailable
from integration.events import Repo
from integration.forges.github_app import GitHubAppAuth, github_headers
from integration.forges.http import ForgeHttp, Response, api_url
from integration.greenness.selection import Changes

GITHUB_FILE_LIMIT = 300
BRANCH_PREFIX = "refs/heads/"


class _Getter(Protocol):
    async def get(self, repo: Repo, *segments: str, what: str, allow: tuple[int, ...] = (),
                  deadline: float | None = None, query: dict[str, str] | None = None) -> Response: ...


def _body(answer: Response, what: str) -> dict[str, Any]:
    if not isinstance(answer.body, dict):
        raise ForgeUnavailable(f"{what}: the forge did not answer with a JSON object")
    return answer.body


class ForgejoReader:
    """Changes and heads from a Forgejo (``ForgejoClient.get``)."""

    def __init__(self, client: _Getter) -> None:
        self.client = client

    async def changes(self, repo: Repo, base: str, head: str, deadline: float | None = None) -> Changes:
        what = f"compare {base[:12]}...{head[:12]} of {repo.full_name}"
        back = _body(await self.client.get(repo, "compare", f"{head}...{base}", what=what, deadline=deadline), what)
        if back.get("total_commits", len(back.get("commits") or [])):
            return Changes((), ancestor=False)
        forward = _body(await self.client.get(repo, "compare", f"{base}...{head}", what=what, deadline=deadline), what)
        paths: list[str] = []
        for commit in forward.get("commits") or []:
            for changed in commit.get("files") or []:
                name = changed.get("filename")
                if isinstance(name, str) and name not in paths:
                    paths.append(name)
        return Changes(tuple(paths))

    async def resolve(self, repo: Repo) -> Repo:
        return repo

    async def head_of(self, repo: Repo, ref: str, deadline: float | None = None) -> str | None:
        """The commit ``ref`` (a branch) points at; None when there is no such branch."""
        if not ref.startswith(BRANCH_PREFIX):
            return None
        what = f"read the head of {ref} of {repo.full_name}"
        answer = await self.client.get(repo, "branches", ref.removeprefix(BRANCH_PREFIX), what=what, allow=(404,),
                                       deadline=deadline)
        if answer.status == 404:
            return None
        commit = _body(answer, what).get("commit") or {}
        sha = commit.get("id") if isinstance(commit, dict) else None
        if not isinstance(sha, str):
            raise ForgeUnavailable(f"{what}: the answer names no commit")
        return sha


class GitHubReader:
    """Changes and heads from GitHub (``GitHubClient.get``); ``installation_of``: a repository's App installation."""

    def __init__(self, client: _Getter, installation_of: Callable[[str], Awaitable[int]] | None = None) -> None:
        self.client = client
        self.installation_of = installation_of

    async def changes(self, repo: Repo, base: str, head: str, deadline: float | None = None) -> Changes:
        what = f"compare {base[:12]}...{head[:12]} of {repo.full_name}"
        doc = _body(await self.client.get(repo, "compare", f"{base}...{head}", what=what, deadline=deadline,
                                          query={"per_page": "100"}), what)
        if doc.get("status") not in ("ahead", "identical"):
            return Changes((), ancestor=False)
        files = [f.get("filename") for f in doc.get("files") or [] if isinstance(f, dict)]
        paths = tuple(f for f in files if isinstance(f, str))
        return Changes(paths, complete=len(files) < GITHUB_FILE_LIMIT)

    async def resolve(self, repo: Repo) -> Repo:
        """``repo`` with the App's installation on it (a polled build has no webhook to say it)."""
        if repo.installation_id or self.installation_of is None:
            return repo
        return Repo(repo.forge, repo.full_name, repo.clone_url, await self.installation_of(repo.full_name))

    async def head_of(self, repo: Repo, ref: str, deadline: float | None = None) -> str | None:
        what = f"read the head of {ref} of {repo.full_name}"
        name = ref.split("/", 2)[2] if ref.startswith(("refs/heads/", "refs/tags/")) else ref
        answer = await self.client.get(await self.resolve(repo), "commits", name, what=what, allow=(404, 422),
                                       deadline=deadline)
        if answer.status in (404, 422):
            return None
        sha = _body(answer, what).get("sha")
        if not isinstance(sha, str):
            raise ForgeUnavailable(f"{what}: the answer names no commit")
        return sha


class Installations:
    """The Solstice App's installation id on a repository, asked once per repository (App JWT)."""

    def __init__(self, http: ForgeHttp, auth: GitHubAppAuth) -> None:
        self.http = http
        self.auth = auth
        self._known: dict[str, int] = {}

    async def __call__(self, full_name: str) -> int:
        if full_name in self._known:
            return self._known[full_name]
        owner, _, name = full_name.partition("/")
        answer = await self.http.request(
            "GET", api_url(self.auth.api_url, "repos", owner, name, "installation"),
            what=f"find the Solstice App's installation on {full_name}",
            headers=github_headers("Bearer", self.auth.app_jwt()))
        found = answer.body.get("id") if isinstance(answer.body, dict) else None
        if not isinstance(found, int) or isinstance(found, bool):
            raise ForgeUnavailable(f"GitHub answered the installation of {full_name} without an id")
        self._known[full_name] = found
        return found
