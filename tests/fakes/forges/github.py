"""A fake GitHub API for a GitHub App: installation tokens, contents, check runs, statuses.

Authentication is checked as GitHub does: ``/app/installations/<id>/access_tokens``
takes only an RS256 App JWT signed by the App's key (``iss`` = App id, at most
10 minutes of life); every other call takes only a live installation token.
Calls without a ``User-Agent`` are refused (403), as on github.com.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.forges.base import FakeForge, json_body, json_error, load_schema, repo_of, validation_error

DOCS = "https://docs.github.com/rest"

# POST /app/installations/{id}/access_tokens takes an optional body; the
# fixtures have no schema for it, so this one is built from the documented
# parameters (REST API 2022-11-28): narrow the token to repositories or permissions.
TOKEN_REQUEST = jsonschema.Draft7Validator({
    "type": "object",
    "properties": {
        "repositories": {"type": "array", "items": {"type": "string"}, "maxItems": 500},
        "repository_ids": {"type": "array", "items": {"type": "integer"}, "maxItems": 500},
        "permissions": {"type": "object", "additionalProperties": {"enum": ["read", "write", "admin"]}},
    },
    "additionalProperties": False,
})


def check_run_problem(validator: jsonschema.Draft7Validator, body: Any) -> str | None:
    """Schema errors, plus the documented rule the enum cannot say: only GitHub sets ``stale``."""
    problem = validation_error(validator, body)
    if problem is None and isinstance(body, dict) and body.get("conclusion") == "stale":
        return "conclusion: 'stale' can only be set by GitHub"
    return problem


def rsa_key_pair() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a fresh 2048-bit RSA key, as a GitHub App's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@dataclass
class FakeGitHub(FakeForge):
    """``fixtures`` is ``.../fixtures/forge/github``; ``public_key`` the App key's public PEM."""

    fixtures: Path = Path()
    app_id: str = "1"
    public_key: bytes = b""
    token_lifetime: float = 3600.0
    tokens: dict[str, tuple[int, float]] = field(default_factory=dict)  # token -> (installation, expires_at)
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> current state
    check_run_updates: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (id, body) in order
    annotations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # id -> all annotations so far
    installations: dict[str, int] = field(default_factory=dict)  # repo -> installation id of the App on it
    dispatches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (repo, body) of each dispatch taken
    check_run_repos: dict[int, str] = field(default_factory=dict)  # id -> owner/repo
    unseen_commits: set[str] = field(default_factory=set)  # shas the API does not know yet (just pushed)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1000)
        self._create = load_schema(self.fixtures / "schemas" / "check-run-create.json")
        self._update = load_schema(self.fixtures / "schemas" / "check-run-update.json")
        self._status = load_schema(self.fixtures / "schemas" / "status-create.json")
        self._dispatch = load_schema(self.fixtures / "schemas" / "repository-dispatch-create.json")
        self._token_example = json.loads((self.fixtures / "installation-token-response.json").read_text())
        self._contents_example = json.loads((self.fixtures / "contents-file-response.json").read_text())

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/app/installations/{installation}/access_tokens", self._access_token)
        app.router.add_get("/repos/{owner}/{repo}/contents/{path:.+}", self.authed(self._contents))
        app.router.add_get("/repos/{owner}/{repo}/branches/{branch:.+}", self.authed(self._branch))
        app.router.add_post("/repos/{owner}/{repo}/check-runs", self.authed(self._create_check_run))
        app.router.add_patch("/repos/{owner}/{repo}/check-runs/{id}", self.authed(self._update_check_run))
        app.router.add_get("/repos/{owner}/{repo}/commits/{ref}/check-runs", self.authed(self._list_check_runs))
        app.router.add_post("/repos/{owner}/{repo}/statuses/{sha}", self.authed(self._create_status))
        app.router.add_get("/repos/{owner}/{repo}/installation", self._repo_installation)
        app.router.add_post("/repos/{owner}/{repo}/dispatches", self.authed(self._create_dispatch))
        app.router.add_get("/repos/{owner}/{repo}/compare/{basehead}", self.authed(self._compare))
        app.router.add_get("/repos/{owner}/{repo}/commits/{ref}", self.authed(self._get_commit))

    def install(self, repo: str, installation: int) -> None:
        """The App is installed on ``repo`` as ``installation``."""
        self.installations[repo] = installation

    def check_run_statuses(self, name: str | None = None) -> list[tuple[int, str, str | None]]:
        """(check run id, status, conclusion) of every create and update, in order."""
        return [
            (run_id, body.get("status", ""), body.get("conclusion"))
            for run_id, body in self.check_run_updates
            if name is None or self.check_runs[run_id].get("name") == name
        ]

    # -- auth -------------------------------------------------------------

    def _user_agent(self, request: web.Request) -> web.Response | None:
        if not request.headers.get("User-Agent"):
            return json_error(403, "Request forbidden by administrative rules. "
                                   "Please make sure your request has a User-Agent header")
        return None

    def auth(self, request: web.Request) -> web.Response | None:
        """Every call but the token exchange takes only a live installation token."""
        refused = self._user_agent(request)
        if refused:
            return refused
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        held = self.tokens.get(token) if scheme.lower() in ("token", "bearer") else None
        if held is None or held[1] <= time.time():
            return json_error(401, "Bad credentials", documentation_url=DOCS)
        return None

    def _app_jwt_refused(self, request: web.Request) -> web.Response | None:
        """Calls as the App itself take only an RS256 App JWT signed by the App's key."""
        refused = self._user_agent(request)
        if refused:
            return refused
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer":
            return json_error(401, "A JSON web token could not be decoded", documentation_url=DOCS)
        try:
            claims = jwt.decode(
                token, self.public_key, algorithms=["RS256"], options={"require": ["iat", "exp", "iss"]},
                leeway=0,
            )
        except jwt.PyJWTError as err:
            return json_error(401, f"A JSON web token could not be decoded ({err})", documentation_url=DOCS)
        if str(claims["iss"]) != self.app_id:
            return json_error(401, "'Issuer' claim ('iss') must be an Integer", documentation_url=DOCS)
        if claims["exp"] - time.time() > 600:
            return json_error(401, "'Expiration time' claim ('exp') is too far in the future", documentation_url=DOCS)
        return None

    async def _access_token(self, request: web.Request) -> web.Response:
        refused = self._app_jwt_refused(request)
        if refused:
            return refused
        body = await json_body(request)
        if body is not None:
            problem = validation_error(TOKEN_REQUEST, body)
            if problem:
                return json_error(422, f"Invalid request.\n\n{problem}", documentation_url=DOCS)
        installation = int(request.match_info["installation"])
        issued = f"ghs_{secrets.token_hex(18)}"
        expires = time.time() + self.token_lifetime
        self.tokens[issued] = (installation, expires)
        answer = copy.deepcopy(self._token_example)
        answer["token"] = issued
        answer["expires_at"] = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return web.json_response(answer, status=201)

    # -- contents -----------------------------------------------------------

    async def _contents(self, request: web.Request) -> web.Response:
        wanted = self.requested_file(request)
        if wanted.ref in self.unseen_commits:
            return json_error(404, f"No commit found for the ref {wanted.ref}",
                              documentation_url=f"{DOCS}/repos/contents#get-repository-content")
        if wanted.text is None:
            return json_error(404, "Not Found", documentation_url=f"{DOCS}/repos/contents#get-repository-content")
        data = wanted.data
        encoded = base64.encodebytes(data).decode()  # GitHub wraps base64 at 60/76 columns
        answer = copy.deepcopy(self._contents_example)
        answer.update(
            content=encoded, size=len(data), path=wanted.path, name=wanted.path.rsplit("/", 1)[-1],
            url=f"{self.url}/repos/{wanted.repo}/contents/{wanted.path}?ref={wanted.ref}",
        )
        return web.json_response(answer)

    async def _branch(self, request: web.Request) -> web.Response:
        # "Get a branch": the documented answer, trimmed to what a client reads (name, commit, protected).
        repo, branch, sha = self.requested_branch(request)
        if sha is None:
            return json_error(404, "Branch not found", documentation_url=f"{DOCS}/branches/branches#get-a-branch")
        return web.json_response({
            "name": branch, "protected": False,
            "commit": {"sha": sha, "url": f"{self.url}/repos/{repo}/commits/{sha}"},
            "_links": {"self": f"{self.url}/repos/{repo}/branches/{branch}",
                       "html": f"https://github.com/{repo}/tree/{branch}"},
        })

    # -- commits (from the commit graph) ---------------------------------------

    def _sha_of(self, repo: str, ref: str) -> str | None:
        if (repo, ref) in self.graph:
            return ref
        return self.branches.get((repo, ref))

    def _commit_doc(self, repo: str, sha: str) -> dict[str, Any]:
        parents, files = self.graph[(repo, sha)]
        url = f"{self.url}/repos/{repo}/commits/{sha}"
        return {"sha": sha, "node_id": f"C_{sha[:10]}", "url": url, "html_url": f"https://github.com/{repo}/commit/{sha}",
                "commit": {"message": f"commit {sha[:7]}", "tree": {"sha": sha, "url": url}},
                "parents": [{"sha": p, "url": f"{self.url}/repos/{repo}/commits/{p}"} for p in parents],
                "files": [{"filename": f, "status": "modified"} for f in files]}

    async def _compare(self, request: web.Request) -> web.Response:
        """GET /repos/{owner}/{repo}/compare/{base}...{head}: status, ahead/behind, commits and (at most 300) files."""
        repo = repo_of(request)
        base, sep, head = request.match_info["basehead"].partition("...")
        base_sha, head_sha = self._sha_of(repo, base), self._sha_of(repo, head)
        if not sep or base_sha is None or head_sha is None:
            return json_error(404, "Not Found", documentation_url=f"{DOCS}/commits/commits#compare-two-commits")
        ahead = sorted(self._ancestors(repo, head_sha) - self._ancestors(repo, base_sha))
        behind = self._ancestors(repo, base_sha) - self._ancestors(repo, head_sha)
        status = ("identical" if not ahead and not behind else "ahead" if not behind else
                  "behind" if not ahead else "diverged")
        files: list[str] = []
        for commit in ahead:
            files += [f for f in self.graph[(repo, commit)][1] if f not in files]
        return web.json_response({
            "url": f"{self.url}/repos/{repo}/compare/{base}...{head}", "status": status, "ahead_by": len(ahead),
            "behind_by": len(behind), "total_commits": len(ahead),
            "commits": [self._commit_doc(repo, c) for c in ahead[:250]],
            "files": [{"filename": f, "status": "modified"} for f in files[:300]]})

    async def _get_commit(self, request: web.Request) -> web.Response:
        """GET /repos/{owner}/{repo}/commits/{ref}: a sha, or a branch name."""
        repo = repo_of(request)
        sha = self._sha_of(repo, request.match_info["ref"])
        if sha is None or (repo, sha) not in self.graph:
            return json_error(422, f"No commit found for SHA: {request.match_info['ref']}",
                              documentation_url=f"{DOCS}/commits/commits#get-a-commit")
        return web.json_response(self._commit_doc(repo, sha))

    # -- checks and statuses -------------------------------------------------

    async def _create_check_run(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        problem = check_run_problem(self._create, body)
        if problem:
            return json_error(422, f"Invalid request.\n\n{problem}", documentation_url=DOCS)
        run_id = next(self._ids)
        state = {"id": run_id, "status": "queued", **body}
        self.check_runs[run_id] = state
        self.check_run_repos[run_id] = repo_of(request)
        self.annotations[run_id] = list(body.get("output", {}).get("annotations", []))
        self.check_run_updates.append((run_id, body))
        return web.json_response(state, status=201)

    async def _update_check_run(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        problem = check_run_problem(self._update, body)
        if problem:
            return json_error(422, f"Invalid request.\n\n{problem}", documentation_url=DOCS)
        run_id = int(request.match_info["id"])
        if run_id not in self.check_runs:
            return json_error(404, "Not Found", documentation_url=DOCS)
        self.check_runs[run_id].update(body)
        # GitHub appends the annotations of each update (at most 50 per request) to the run's list.
        self.annotations[run_id].extend(body.get("output", {}).get("annotations", []))
        self.check_run_updates.append((run_id, body))
        return web.json_response(self.check_runs[run_id])

    async def _repo_installation(self, request: web.Request) -> web.Response:
        """GET /repos/{owner}/{repo}/installation: the App's installation on a repository (App JWT only)."""
        refused = self._app_jwt_refused(request)
        if refused:
            return refused
        installation = self.installations.get(repo_of(request))
        if installation is None:
            return json_error(404, "Not Found",
                              documentation_url=f"{DOCS}/apps/apps#get-a-repository-installation-for-the-authenticated-app")
        return web.json_response({"id": installation, "app_id": int(self.app_id), "target_type": "Organization",
                                  "account": {"login": request.match_info["owner"]}})

    async def _create_dispatch(self, request: web.Request) -> web.Response:
        """POST /repos/{owner}/{repo}/dispatches: 204 with no body; the token must be the repo's installation's."""
        repo = repo_of(request)
        token = request.headers.get("Authorization", "").partition(" ")[2]
        if self.tokens[token][0] != self.installations.get(repo):
            return json_error(404, "Not Found",
                              documentation_url=f"{DOCS}/repos/repos#create-a-repository-dispatch-event")
        body = await json_body(request)
        problem = validation_error(self._dispatch, body)
        if problem:
            return json_error(422, f"Invalid request.\n\n{problem}", documentation_url=DOCS)
        self.dispatches.append((repo, body))
        return web.Response(status=204)

    async def _list_check_runs(self, request: web.Request) -> web.Response:
        """GET /repos/{o}/{r}/commits/{ref}/check-runs (ref: a sha here): ``check_name``, ``status``,
        ``filter`` (latest: the newest run of each name; all), ``per_page`` (<= 100), ``page``."""
        query = request.query
        try:
            per_page, page = int(query.get("per_page", "30")), int(query.get("page", "1"))
        except ValueError:
            return json_error(422, "Invalid request: per_page and page are integers", documentation_url=DOCS)
        if not 1 <= per_page <= 100 or page < 1 or query.get("filter", "latest") not in ("latest", "all"):
            return json_error(422, "Invalid request", documentation_url=DOCS)
        repo, sha = repo_of(request), request.match_info["ref"]
        runs = [run for run_id, run in sorted(self.check_runs.items(), reverse=True)
                if self.check_run_repos.get(run_id) == repo and run.get("head_sha") == sha
                and query.get("check_name", run.get("name")) == run.get("name")
                and query.get("status", run.get("status")) == run.get("status")]
        if query.get("filter", "latest") == "latest":
            newest: dict[str, dict[str, Any]] = {}
            for run in runs:
                newest.setdefault(run["name"], run)
            runs = list(newest.values())
        shown = runs[(page - 1) * per_page: page * per_page]
        return web.json_response({"total_count": len(runs), "check_runs": [dict(run) for run in shown]})

    async def _create_status(self, request: web.Request) -> web.Response:
        taken = await self.take_status(
            request, self._status,
            lambda problem: json_error(422, f"Validation Failed: {problem}", documentation_url=DOCS),
        )
        if isinstance(taken, web.Response):
            return taken
        return web.json_response(taken, status=201)
