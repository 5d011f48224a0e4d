"""A strict fake of HashiCorp Vault's HTTP API: the parts Solstice uses, as Vault documents them.

Vault cannot be installed here, so this real HTTP server on loopback stands
in for it. It was written from Vault's API documentation (developer.hashicorp.com
/vault/api-docs: ``secret/kv/kv-v2``, ``auth/token``, ``auth/approle``) and
the KV plugin's read handler (hashicorp/vault-plugin-secrets-kv
``path_data.go``), and answers as they say:

* every answer is JSON; errors are ``{"errors": [...]}``: 400 bad request,
  403 ``permission denied`` (no token, an unknown, expired or revoked token,
  or a policy that does not grant the path), 404 ``{"errors": []}``, 405 for
  a method the path does not take;
* ``GET /v1/<mount>/data/<path>[?version=N]`` (KV v2): the response envelope
  ``{request_id, lease_id, renewable, lease_duration, data: {data, metadata},
  wrap_info, warnings, auth}``; metadata ``created_time`` (RFC 3339 with
  nanoseconds), ``custom_metadata`` (of the key, null when unset),
  ``deletion_time``, ``destroyed``, ``version``. A missing path or version is
  404 with no body beyond ``errors``; a deleted or destroyed version is 404
  WITH the envelope (``data.data`` null, its metadata);
* ``GET /v1/auth/token/lookup-self`` -> ``data`` with ``ttl`` (seconds left,
  0 = never expires), ``renewable``, ``policies``, ...;
* ``POST /v1/auth/token/renew-self`` -> ``auth`` with ``lease_duration``;
  a token that is not renewable is 400 ``lease is not renewable``;
* ``POST /v1/auth/<approle mount>/login`` with ``role_id`` and ``secret_id``
  -> ``auth.client_token``, ``lease_duration``, ``renewable``; wrong ids are
  400 ``invalid role or secret ID``;
* ``POST /v1/auth/token/revoke-self`` -> 204.

Policies are read-only ACLs on paths: an exact path, or a prefix ending in
``*`` as in Vault's policy language. Time is the fake's own clock
(``time.monotonic`` plus ``advance``), so a test can move past a TTL
without sleeping.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

from aiohttp import web

from tests.fakes.serving import serve_on_loopback


def _rfc3339(moment: datetime) -> str:
    """Vault prints nanoseconds: ``2018-03-22T02:24:06.945319214Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}123Z"


@dataclass
class Token:
    token: str
    policies: list[str]  # path globs the token may read
    ttl: float  # seconds from issue/renewal; 0 = never expires
    renewable: bool
    issued: float
    revoked: bool = False
    accessor: str = field(default_factory=lambda: secrets.token_hex(12))

    def left(self, now: float) -> float:
        return max(0.0, self.issued + self.ttl - now) if self.ttl else 0.0

    def alive(self, now: float) -> bool:
        return not self.revoked and (not self.ttl or now < self.issued + self.ttl)


@dataclass
class Version:
    data: dict[str, Any]
    created: datetime
    deleted: bool = False
    destroyed: bool = False


@dataclass
class KvKey:
    versions: dict[int, Version] = field(default_factory=dict)
    custom_metadata: dict[str, str] | None = None

    @property
    def current(self) -> int:
        return max(self.versions) if self.versions else 0


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    status: int
    token: str | None


class FakeVault:
    """``async with FakeVault() as vault:`` -> ``vault.url``; see the module docstring."""

    def __init__(self, kv_mounts: tuple[str, ...] = ("secret",), approle_mount: str = "approle") -> None:
        self.kv: dict[str, dict[str, KvKey]] = {m: {} for m in kv_mounts}
        self.approle_mount = approle_mount
        self.tokens: dict[str, Token] = {}
        # role_id -> (secret_id, policies, ttl, renewable)
        self.roles: dict[str, tuple[str, list[str], float, bool]] = {}
        self.calls: list[Call] = []
        self.offset = 0.0
        self.url = ""
        self._runner: web.AppRunner | None = None

    # -- test controls ----------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward (tokens age, nothing else changes)."""
        self.offset += seconds

    def issue_token(self, policies: list[str], ttl: float = 0, renewable: bool = True) -> str:
        token = f"hvs.{secrets.token_urlsafe(18)}"
        self.tokens[token] = Token(token, list(policies), ttl, renewable, self.now())
        return token

    def add_approle(self, role_id: str, secret_id: str, policies: list[str], ttl: float = 3600,
                    renewable: bool = True) -> None:
        self.roles[role_id] = (secret_id, list(policies), ttl, renewable)

    def revoke(self, token: str) -> None:
        self.tokens[token].revoked = True

    def put(self, mount: str, path: str, data: dict[str, Any], custom_metadata: dict[str, str] | None = None) -> int:
        """Write a new version (as ``vault kv put``); returns its number."""
        key = self.kv[mount].setdefault(path, KvKey())
        number = key.current + 1
        key.versions[number] = Version(dict(data), datetime.now(UTC))
        if custom_metadata is not None:
            key.custom_metadata = dict(custom_metadata)
        return number

    def delete_latest(self, mount: str, path: str) -> None:
        """Soft-delete the latest version (as ``vault kv delete``)."""
        key = self.kv[mount][path]
        key.versions[key.current].deleted = True

    def calls_to(self, suffix: str) -> list[Call]:
        return [c for c in self.calls if c.path.endswith(suffix)]

    # -- server -------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        app = web.Application(middlewares=[self._record])
        app.router.add_route("*", "/v1/{path:.*}", self._dispatch)
        self._runner, self.url = await serve_on_loopback(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as err:
            response = err
        self.calls.append(Call(request.method, request.path, response.status, request.headers.get("X-Vault-Token")))
        return response

    # -- answers --------------------------------------------------------------------------
    @staticmethod
    def _errors(status: int, *errors: str) -> web.Response:
        return web.json_response({"errors": list(errors)}, status=status)

    @staticmethod
    def _envelope(data: Any = None, auth: Any = None) -> dict[str, Any]:
        return {"request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False, "lease_duration": 0,
                "data": data, "wrap_info": None, "warnings": None, "auth": auth}

    def _token(self, request: web.Request) -> Token | None:
        token = self.tokens.get(request.headers.get("X-Vault-Token", ""))
        return token if token is not None and token.alive(self.now()) else None

    def _allowed(self, token: Token, path: str) -> bool:
        return any(path == p or (p.endswith("*") and path.startswith(p[:-1])) for p in token.policies)

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        raw = await request.read()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            return self._errors(400, "failed to parse JSON input")
        return body if isinstance(body, dict) else self._errors(400, "failed to parse JSON input")

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        if path == f"auth/{self.approle_mount}/login":
            return await self._login(request) if request.method == "POST" else self._errors(405)
        if request.method == "GET" and request.content_length:
            return self._errors(400, "GET requests take no body")
        token = self._token(request)
        if token is None:
            return self._errors(403, "permission denied")
        if path == "auth/token/lookup-self":
            return self._lookup_self(token) if request.method == "GET" else self._errors(405)
        if path == "auth/token/renew-self":
            return await self._renew_self(request, token) if request.method in ("POST", "PUT") else self._errors(405)
        if path == "auth/token/revoke-self":
            if request.method not in ("POST", "PUT"):
                return self._errors(405)
            token.revoked = True
            return web.Response(status=204)
        mount, _, rest = path.partition("/")
        if mount in self.kv and rest.startswith("data/"):
            if request.method != "GET":
                return self._errors(405, "this fake only reads")
            if not self._allowed(token, path):
                return self._errors(403, "1 error occurred:\n\t* permission denied\n\n")
            return self._kv_read(mount, rest[len("data/"):], request.query.get("version", ""))
        return self._errors(404, f"no handler for route \"{path}\". route entry not found.")

    def _kv_read(self, mount: str, path: str, version: str) -> web.Response:
        key = self.kv[mount].get(path)
        if key is None:
            return self._errors(404)
        if version and not version.isdigit():
            return self._errors(400, "error converting input for field \"version\"")
        number = int(version) if version and int(version) > 0 else key.current
        found = key.versions.get(number)
        if found is None:
            return self._errors(404)
        metadata = {"created_time": _rfc3339(found.created), "custom_metadata": key.custom_metadata,
                    "deletion_time": _rfc3339(found.created) if found.deleted else "",
                    "destroyed": found.destroyed, "version": number}
        if found.deleted or found.destroyed:
            return web.json_response(self._envelope({"data": None, "metadata": metadata}), status=404)
        return web.json_response(self._envelope({"data": found.data, "metadata": metadata}))

    def _lookup_self(self, token: Token) -> web.Response:
        now = self.now()
        return web.json_response(self._envelope({
            "accessor": token.accessor, "creation_time": int(time.time()), "creation_ttl": int(token.ttl),
            "display_name": "token", "entity_id": "", "expire_time": None, "explicit_max_ttl": 0,
            "id": token.token, "meta": None, "num_uses": 0, "orphan": True, "path": "auth/token/create",
            "policies": ["default", *token.policies], "renewable": token.renewable,
            "ttl": int(token.left(now)) if token.ttl else 0, "type": "service"}))

    async def _renew_self(self, request: web.Request, token: Token) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if not token.renewable:
            return self._errors(400, "lease is not renewable")
        token.issued = self.now()
        return web.json_response(self._envelope(auth={
            "client_token": token.token, "accessor": token.accessor, "policies": ["default", *token.policies],
            "token_policies": ["default", *token.policies], "metadata": None,
            "lease_duration": int(token.ttl), "renewable": True}))

    async def _login(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        role_id, secret_id = body.get("role_id"), body.get("secret_id")
        if not isinstance(role_id, str) or not role_id:
            return self._errors(400, "missing role_id")
        role = self.roles.get(role_id)
        if role is None or not isinstance(secret_id, str) or not secrets.compare_digest(role[0], secret_id):
            return self._errors(400, "invalid role or secret ID")
        _, policies, ttl, renewable = role
        token = self.issue_token(policies, ttl, renewable)
        return web.json_response(self._envelope(auth={
            "client_token": token, "accessor": self.tokens[token].accessor,
            "policies": ["default", *policies], "token_policies": ["default", *policies],
            "metadata": {"role_name": "solstice"},
            "lease_duration": int(ttl), "renewable": renewable}))
