"""A fake OIDC issuer (GitHub Actions' shape): a JWKS endpoint on loopback, tokens minted by the test.

The issuer holds RSA keys by key id and serves the public halves at
``/.well-known/jwks`` (the path GitHub Actions uses); ``mint`` signs a
token like the ones a GitHub Actions job gets (claims as in
``fixtures/forge/github/oidc-claims-example.json``), with any claim
changed or removed, any key, any header. ``fetches`` counts JWKS reads.
It also serves the token endpoint a job calls
(``ACTIONS_ID_TOKEN_REQUEST_URL``): ``GET /token?audience=...`` with
``Authorization: bearer <request token>``.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.fakes.serving import LoopbackFake

REMOVE = object()  # a claim value that means: leave the claim out


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class FakeOidcIssuer(LoopbackFake):
    """``keys``: kid -> private key, all published; ``audience`` the default ``aud`` of minted tokens."""

    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    audience: str = "https://solstice.test"
    url: str = ""
    fetches: int = 0
    request_token: str = "actions-request-token"
    claims_for_requests: dict[str, Any] = field(default_factory=dict)  # the claims the token endpoint puts in
    token_requests: list[str] = field(default_factory=list)  # the audiences asked for

    @property
    def issuer(self) -> str:
        return self.url

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks"

    def jwks(self) -> dict[str, Any]:
        published = []
        for kid, key in self.keys.items():
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            published.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": published}

    def claims(self, repository: str, /, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "jti": "example-id", "sub": f"repo:{repository}:ref:refs/heads/main", "aud": self.audience,
            "ref": "refs/heads/main", "sha": "0" * 40, "repository": repository,
            "repository_owner": repository.split("/")[0], "run_id": "4242", "run_number": "10",
            "run_attempt": "1", "runner_environment": "self-hosted", "actor": "octocat",
            "workflow": "downstream", "event_name": "repository_dispatch", "iss": self.issuer,
            "nbf": now - 5, "exp": now + 300, "iat": now - 5,
        }
        for name, value in changes.items():
            if value is REMOVE:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def mint(self, repository: str, /, kid: str | None = None, key: rsa.RSAPrivateKey | None = None,
             headers: dict[str, Any] | None = None, **changes: Any) -> str:
        """A signed RS256 token for ``repository`` (the first key unless ``kid``/``key`` say otherwise)."""
        kid = kid or next(iter(self.keys))
        signer = key or self.keys[kid]
        return jwt.encode(self.claims(repository, **changes), signer, algorithm="RS256",
                          headers={"kid": kid, **(headers or {})})

    @staticmethod
    def unsigned(claims: dict[str, Any], kid: str) -> str:
        """A token with ``alg: none`` and no signature."""
        def part(doc: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
        return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{part(claims)}."

    async def _jwks(self, request: web.Request) -> web.Response:
        self.fetches += 1
        return web.json_response(self.jwks())

    async def _token(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization", "") != f"bearer {self.request_token}":
            return web.json_response({"message": "Bad credentials"}, status=401)
        audience = request.query.get("audience", self.audience)
        self.token_requests.append(audience)
        claims = dict(self.claims_for_requests)
        repository = claims.pop("repository")
        return web.json_response({"count": 1, "value": self.mint(repository, aud=audience, **claims)})

    def make_app(self) -> web.Application:
        if not self.keys:
            self.keys["key-1"] = new_key()
        app = web.Application()
        app.router.add_get("/.well-known/jwks", self._jwks)
        app.router.add_get("/token", self._token)
        return app
