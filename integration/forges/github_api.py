"""The GitHub REST calls Solstice makes: read the workflow file, find, create and update check runs.

A check run is never created twice: a create whose answer was lost may have
happened, so ``ensure_check_run`` looks for the run by ``external_id`` before
every create (the first and each retry) and adopts the one it finds.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from integration.errors import ForgeRateLimited, ForgeRejected, ForgeUnavailable
from integration.events import Repo
from integration.forges.branches import branch_sha
from integration.forges.github_app import GitHubAppAuth, github_headers
from integration.forges.http import ForgeHttp, Response, api_url

# GitHub keeps at most 1000 check runs of one name per suite; 100 per page.
PAGE_SIZE = 100
MAX_PAGES = 10


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
        for name in ("name", "head_sha", "status", "conclusion", "details_url", "external_id",
                     "started_at", "completed_at"):
            value = getattr(self, name)
            if value is not None:
                doc[name] = value
        if self.output is not None:
            doc["output"] = self.output.to_json()
        return doc


@dataclass(frozen=True, slots=True)
class FoundCheckRun:
    """A check run as GitHub has it: its id and how far it got (``created``: made by this call)."""

    id: int
    status: str  # queued, in_progress, completed (waiting/requested/pending: not yet started)
    conclusion: str | None = None
    created: bool = False


def decode_contents(body: Any, what: str) -> bytes:
    """The bytes of a contents-API answer (``type`` file, base64 ``content``); what they
    hold is the caller's business."""
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
        idempotent: bool = True,
    ) -> Any:
        url = api_url(self.api_url, "repos", *repo_path(repo), *path, query=query)
        for retry_auth in (True, False):
            token = await self.auth.token(repo.installation_id, deadline)
            try:
                return await self.http.request(
                    method, url, what=what, headers=github_headers("token", token), body=body,
                    allow=allow, deadline=deadline, idempotent=idempotent,
                )
            except ForgeRejected as err:
                # A revoked or expired token: fetch a fresh one once.
                if err.status != 401 or not retry_auth:
                    raise
                self.auth.forget(repo.installation_id)
        raise AssertionError("unreachable")

    async def get(self, repo: Repo, *segments: str, what: str, allow: tuple[int, ...] = (),
                  deadline: float | None = None, query: dict[str, str] | None = None) -> Response:
        """``GET /repos/<repo>/<segments...>`` with the installation's token, for readers elsewhere (greenness)."""
        answer: Response = await self._call("GET", repo, segments, what=what, allow=allow, deadline=deadline,
                                            query=query)
        return answer

    async def fetch_file(self, repo: Repo, path: str, sha: str, deadline: float | None = None) -> bytes | None:
        """The bytes of ``path`` at commit ``sha``, or None when the commit has no such file.

        GitHub also answers 404 "No commit found for the ref" for a commit its
        API does not see yet (just pushed): that is ``ForgeUnavailable`` (try
        again), not "no workflow".
        """
        what = f"read {path} of {repo.full_name} at {sha[:12]}"
        answer = await self._call(
            "GET", repo, ("contents", *path.split("/")), what=what, allow=(404,), deadline=deadline,
            query={"ref": sha},
        )
        if answer.status == 404:
            message = str(answer.body.get("message", "")) if isinstance(answer.body, dict) else ""
            if "no commit found" in message.lower():
                raise ForgeUnavailable(f"{what}: GitHub does not see the commit yet ({message})")
            return None
        return decode_contents(answer.body, what)

    async def branch_head(self, repo: Repo, branch: str, deadline: float | None = None) -> str | None:
        """The commit at the head of ``branch`` (a schedule's run builds it), or None when there is no such branch."""
        answer = await self._call("GET", repo, ("branches", *branch.split("/")), what=f"read branch {branch} of "
                                  f"{repo.full_name}", allow=(404,), deadline=deadline)
        if answer.status == 404:
            return None
        return branch_sha(answer.body, ("commit", "sha"), f"branch {branch} of {repo.full_name}")

    async def find_check_run(self, repo: Repo, sha: str, name: str, external_id: str,
                             deadline: float | None = None) -> FoundCheckRun | None:
        """The newest check run named ``name`` on ``sha`` whose ``external_id`` is ``external_id``, if any."""
        what = f"list check runs {name} of {repo.full_name} at {sha[:12]}"
        found: FoundCheckRun | None = None
        for page in range(1, MAX_PAGES + 1):
            answer = await self._call(
                "GET", repo, ("commits", sha, "check-runs"), what=what, deadline=deadline,
                query={"check_name": name, "filter": "all", "per_page": str(PAGE_SIZE), "page": str(page)},
            )
            runs = answer.body.get("check_runs") if isinstance(answer.body, dict) else None
            if not isinstance(runs, list):
                raise ForgeUnavailable(f"{what}: GitHub answered without a check_runs list")
            for run in runs:
                if (isinstance(run, dict) and run.get("external_id") == external_id and isinstance(run.get("id"), int)
                        and (found is None or run["id"] > found.id)):
                    found = FoundCheckRun(run["id"], str(run.get("status") or ""), run.get("conclusion"))
            if len(runs) < PAGE_SIZE:
                break
        return found

    async def create_check_run(self, repo: Repo, check: CheckRun, deadline: float | None = None) -> int:
        """One POST, never repeated after it may have reached GitHub (use ``ensure_check_run``)."""
        answer = await self._call(
            "POST", repo, ("check-runs",), what=f"create check run on {repo.full_name}", body=check.to_json(),
            deadline=deadline, idempotent=False,
        )
        run_id = answer.body.get("id") if isinstance(answer.body, dict) else None
        if not isinstance(run_id, int):
            raise ForgeUnavailable("GitHub created a check run but did not say its id")
        return run_id

    async def ensure_check_run(self, repo: Repo, check: CheckRun, deadline: float | None = None) -> FoundCheckRun:
        """The check run of ``check.external_id`` on ``check.head_sha``: found, or created once.

        Each create is preceded by a look-up, so a create whose answer was lost
        (timeout, dropped connection, a proxy's 5xx) is adopted, not repeated.
        """
        assert check.name and check.head_sha and check.external_id, "a check run to ensure needs name, sha, external_id"
        policy = self.http.policy
        for attempt in range(1, policy.attempts + 1):
            found = await self.find_check_run(repo, check.head_sha, check.name, check.external_id, deadline)
            if found is not None:
                return found
            try:
                return FoundCheckRun(await self.create_check_run(repo, check, deadline), check.status or "queued",
                                     check.conclusion, created=True)
            except ForgeRateLimited:
                raise  # nothing was created; the caller comes back when the forge said
            except ForgeUnavailable:
                if attempt == policy.attempts or not await self.http.pause_before_retry(attempt, deadline):
                    raise
        raise AssertionError("unreachable")

    async def update_check_run(self, repo: Repo, check_run_id: int, check: CheckRun,
                               deadline: float | None = None) -> None:
        await self._call(
            "PATCH", repo, ("check-runs", check_run_id), what=f"update check run {check_run_id} on {repo.full_name}",
            body=check.to_json(), deadline=deadline,
        )
