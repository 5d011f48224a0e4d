"""The Forgejo / Gitea REST calls Solstice makes: read the workflow file, set commit statuses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integration.errors import ForgeAuthError
from integration.events import Repo
from integration.forges.branches import branch_sha
from integration.forges.github_api import decode_contents, repo_path
from integration.forges.http import ForgeHttp, Response, api_url

USER_AGENT = "solstice-ci"
DESCRIPTION_LIMIT = 1000  # Forgejo stores TEXT; keep the status list readable


@dataclass(frozen=True, slots=True)
class CommitStatus:
    state: str  # pending, success, error, failure, warning
    context: str
    description: str = ""
    target_url: str = ""

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"state": self.state, "context": self.context}
        if self.description:
            doc["description"] = self.description[:DESCRIPTION_LIMIT]
        if self.target_url:
            doc["target_url"] = self.target_url
        return doc


class ForgejoClient:
    """Forgejo API calls with a token (``Authorization: token ...``)."""

    def __init__(self, http: ForgeHttp, base_url: str, token: str) -> None:
        if not base_url:
            raise ForgeAuthError("SOLSTICE_FORGEJO_URL is not set: the Forgejo base URL is needed to call its API")
        self.http = http
        self.api_url = base_url.rstrip("/") + "/api/v1"
        self._headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if token:
            self._headers["Authorization"] = f"token {token}"

    async def fetch_file(self, repo: Repo, path: str, sha: str, deadline: float | None = None) -> bytes | None:
        """The bytes of ``path`` at commit ``sha``, or None when the commit has no such file."""
        what = f"read {path} of {repo.full_name} at {sha[:12]}"
        answer = await self.http.request(
            "GET", api_url(self.api_url, "repos", *repo_path(repo), "contents", *path.split("/"), query={"ref": sha}),
            what=what, headers=self._headers, allow=(404,), deadline=deadline,
        )
        if answer.status == 404:
            return None
        return decode_contents(answer.body, what)

    async def branch_head(self, repo: Repo, branch: str, deadline: float | None = None) -> str | None:
        """The commit at the head of ``branch`` (a schedule's run builds it), or None when there is no such branch."""
        answer = await self.http.request(
            "GET", api_url(self.api_url, "repos", *repo_path(repo), "branches", *branch.split("/")),
            what=f"read branch {branch} of {repo.full_name}", headers=self._headers, allow=(404,), deadline=deadline,
        )
        if answer.status == 404:
            return None
        return branch_sha(answer.body, ("commit", "id"), f"branch {branch} of {repo.full_name}")

    async def get(self, repo: Repo, *segments: str, what: str, allow: tuple[int, ...] = (),
                  deadline: float | None = None, query: dict[str, str] | None = None) -> Response:
        """``GET /repos/<repo>/<segments...>`` (each segment quoted whole), for readers elsewhere (greenness)."""
        return await self.http.request("GET", api_url(self.api_url, "repos", *repo_path(repo), *segments, query=query),
                                       what=what, headers=self._headers, allow=allow, deadline=deadline)

    async def set_status(self, repo: Repo, sha: str, status: CommitStatus, deadline: float | None = None) -> None:
        await self.http.request(
            "POST", api_url(self.api_url, "repos", *repo_path(repo), "statuses", sha),
            what=f"set status {status.context} on {repo.full_name}@{sha[:12]}",
            headers=self._headers, body=status.to_json(), deadline=deadline,
        )
