"""The GitHub REST calls Solstice makes: read the workflow file, create and update check runs."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from integration.errors import ForgeRejected, ForgeUnavailable
from integration.events import Repo
from integration.forges.github_app import GitHubAppAuth, github_headers
from integration.forges.http import ForgeHttp, api_url


@dataclass(frozen=True, slots=True)
class CheckRunOutput:
    title: str
    summary: str  # markdown, at most 65535 characters
    text: str = ""
    annotations: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"title": self.title, "summary": self.summary}
        if self.text:
            doc["text"] = self.text
        if self.annotations:
            doc["annotations"] = list(self.annotations)
        return doc


@dataclass(frozen=True, slots=True)
class CheckRun:
    """The fields of a check-run create or update (None fields are left out)."""

    name: str | None = None
    head_sha: str | None = None
    status: str | None = None  # queued, in_progress, completed
    conclusion: str | None = None
    details_url: str | None = None
    external_id: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    output: CheckRunOutput | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for name in ("name", "head_sha", "status", "conclusion", "details_url", "external_id", "started_at", "completed_at"):
            value = getattr(self, name)
            if value is not None:
                doc[name] = value
        if self.output is not None:
            doc["output"] = self.output.to_json()
        return doc


def decode_contents(body: Any, what: str) -> bytes:
    """The bytes of a contents-API answer (``type`` file, base64 ``content``); what they hold is the caller's business."""
    if not isinstance(body, dict) or body.get("type") != "file" or not isinstance(body.get("content"), str):
        raise ForgeUnavailable(f"{what}: the contents API did not answer with a file")
    try:
        return base64.b64decode(body["content"])
    except binascii.Error as err:
        raise ForgeUnavailable(f"{what}: the contents API answered with broken base64 ({err})") from err


def repo_path(repo: Repo) -> tuple[str, str]:
    """``owner`` and ``name``: two URL path segments, never more."""
    owner, _, name = repo.full_name.partition("/")
    return owner, name


class GitHubClient:
    """GitHub API calls as the App's installation on each repository."""

    def __init__(self, http: ForgeHttp, auth: GitHubAppAuth) -> None:
        self.http = http
        self.auth = auth
        self.api_url = auth.api_url

    async def _call(
        self, method: str, repo: Repo, path: tuple[str | int, ...], *, what: str, body: Any = None,
        allow: tuple[int, ...] = (), deadline: float | None = None, query: dict[str, str] | None = None,
    ) -> Any:
        url = api_url(self.api_url, "repos", *repo_path(repo), *path, query=query)
        for retry_auth in (True, False):
            token = await self.auth.token(repo.installation_id, deadline)
            try:
                return await self.http.request(
                    method, url, what=what, headers=github_headers("token", token), body=body,
                    allow=allow, deadline=deadline,
                )
            except ForgeRejected as err:
                # A revoked or expired token: fetch a fresh one once.
                if err.status != 401 or not retry_auth:
                    raise
                self.auth.forget(repo.installation_id)
        raise AssertionError("unreachable")

    async def fetch_file(self, repo: Repo, path: str, sha: str, deadline: float | None = None) -> bytes | None:
        """The bytes of ``path`` at commit ``sha``, or None when the commit has no such file."""
        what = f"read {path} of {repo.full_name} at {sha[:12]}"
        answer = await self._call(
            "GET", repo, ("contents", *path.split("/")), what=what, allow=(404,), deadline=deadline,
            query={"ref": sha},
        )
        if answer.status == 404:
            return None
        return decode_contents(answer.body, what)

    async def create_check_run(self, repo: Repo, check: CheckRun, deadline: float | None = None) -> int:
        answer = await self._call(
            "POST", repo, ("check-runs",), what=f"create check run on {repo.full_name}", body=check.to_json(),
            deadline=deadline,
        )
        run_id = answer.body.get("id") if isinstance(answer.body, dict) else None
        if not isinstance(run_id, int):
            raise ForgeUnavailable("GitHub created a check run but did not say its id")
        return run_id

    async def update_check_run(self, repo: Repo, check_run_id: int, check: CheckRun,
                               deadline: float | None = None) -> None:
        await self._call(
            "PATCH", repo, ("check-runs", check_run_id), what=f"update check run {check_run_id} on {repo.full_name}",
            body=check.to_json(), deadline=deadline,
        )
