"""What greenness asks a forge: the paths changed between two commits, and the head of a ref (polling).

Forgejo / Gitea: ``GET /repos/{o}/{r}/compare/{base}...{head}`` lists the
commits of ``head`` not in ``base`` with their files; ``base`` is an
ancestor of ``head`` when the reverse comparison lists no commit. A
branch's head: ``GET /repos/{o}/{r}/branches/{name}``.

GitHub: ``GET /repos/{o}/{r}/compare/{base}...{head}`` says ``status``
(ahead / identical: an ancestor; behind / diverged: not) and lists at most
300 files. A ref's head: ``GET /repos/{o}/{r}/commits/{ref}``.
"""

from __future__ import annotations

from typing import Any, Protocol

from integration.errors import ForgeUnavailable
from integration.events import Repo
from integration.forges.http import Response
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
    """Changes and heads from GitHub (``GitHubClient.get``)."""

    def __init__(self, client: _Getter) -> None:
        self.client = client

    async def changes(self, repo: Repo, base: str, head: str, deadline: float | None = None) -> Changes:
        what = f"compare {base[:12]}...{head[:12]} of {repo.full_name}"
        doc = _body(await self.client.get(repo, "compare", f"{base}...{head}", what=what, deadline=deadline,
                                          query={"per_page": "100"}), what)
        if doc.get("status") not in ("ahead", "identical"):
            return Changes((), ancestor=False)
        files = [f.get("filename") for f in doc.get("files") or [] if isinstance(f, dict)]
        paths = tuple(f for f in files if isinstance(f, str))
        return Changes(paths, complete=len(files) < GITHUB_FILE_LIMIT)

    async def head_of(self, repo: Repo, ref: str, deadline: float | None = None) -> str | None:
        what = f"read the head of {ref} of {repo.full_name}"
        answer = await self.client.get(repo, "commits", ref.removeprefix("refs/"), what=what, allow=(404, 422),
                                       deadline=deadline)
        if answer.status in (404, 422):
            return None
        sha = _body(answer, what).get("sha")
        if not isinstance(sha, str):
            raise ForgeUnavailable(f"{what}: the answer names no commit")
        return sha
