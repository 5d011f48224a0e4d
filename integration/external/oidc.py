"""GitHub Actions OIDC tokens: who is calling the results API, proven by the issuer's signature.

``TokenVerifier.verify`` takes the ``Authorization: Bearer`` value and
returns the verified repository, or raises ``TokenInvalid`` saying what is
wrong (401) - or ``KeysUnavailable`` when the issuer's keys cannot be had
(503: not the caller's fault). Checked: the algorithm is RS256 (``alg:
none`` and every HMAC algorithm are refused before any key is looked at),
the signature against the issuer's JWKS, ``iss``, ``aud``, ``exp``, ``nbf``
and ``iat`` (with ``oidc_leeway`` of clock skew), and a ``repository``
claim naming a repository.

``JwksCache`` fetches the JWKS, keeps it ``jwks_max_age``, and fetches it
again when a token names a key id it does not know (the issuer rotated its
keys) - but at most once per ``jwks_refresh_min_interval``, so tokens with
made-up key ids cannot make Solstice hammer the issuer; concurrent
requests share one fetch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from common.validation import RequestInvalid, check_repo
from integration.errors import ForgeError, IntegrationError
from integration.forges.github_app import USER_AGENT
from integration.forges.http import ForgeHttp

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256",)  # what GitHub Actions signs with
MAX_TOKEN_LENGTH = 16 * 1024


class TokenInvalid(IntegrationError):
    """The bearer token does not prove a caller (401); the message says why."""


class KeysUnavailable(IntegrationError):
    """The issuer's keys could not be fetched (503: retry later)."""


@dataclass(frozen=True, slots=True)
class VerifiedCaller:
    """What the issuer signed: the repository, and the run the token was minted in (when it says)."""

    repository: str
    run_id: str = ""
    run_attempt: int = 0
    subject: str = ""


class JwksCache:
    """The issuer's signing keys by key id (see the module docstring)."""

    def __init__(self, http: ForgeHttp, url: str, max_age: float, min_refresh_interval: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.http = http
        self.url = url
        self.max_age = max_age
        self.min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # the last fetch that gave keys
        self._failed_at: float | None = None  # the last fetch that did not
        self._unknown_refresh_at: float | None = None  # the last fetch an unknown kid caused
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            answer = await self.http.request("GET", self.url, what="read the OIDC issuer's keys",
                                             headers={"User-Agent": USER_AGENT, "Accept": "application/json"})
        except ForgeError as err:
            self._failed_at = self._clock()
            raise KeysUnavailable(f"the OIDC issuer's keys could not be read: {err}") from err
        keys: dict[str, jwt.PyJWK] = {}
        entries = answer.body.get("keys") if isinstance(answer.body, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            try:
                keys[entry["kid"]] = jwt.PyJWK(entry)
            except jwt.PyJWTError as err:  # a key type PyJWT cannot use: skip it, keep the others
                log.warning("OIDC key %r skipped: %s", entry["kid"], err)
        if not keys:
            self._failed_at = self._clock()
            raise KeysUnavailable(f"the OIDC issuer's JWKS at {self.url} holds no usable key")
        self._keys = keys
        self._fetched_at = self._clock()
        log.info("OIDC issuer keys fetched", extra={"fields": {"url": self.url, "keys": len(keys)}})

    def _since(self, at: float | None) -> float:
        return float("inf") if at is None else self._clock() - at

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key ``kid``: the JWKS is fetched when stale, and again (within the bound) for an unknown ``kid``."""
        if self._since(self._fetched_at) < self.max_age and kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            if self._since(self._fetched_at) >= self.max_age:
                # Never fetched, or stale; after a failed fetch, not again within the bound.
                if self._since(self._failed_at) >= self.min_refresh_interval:
                    try:
                        await self._fetch()
                    except KeysUnavailable:
                        if not self._keys:
                            raise
                        log.warning("the OIDC issuer's keys could not be refreshed, the ones held are used")
                elif not self._keys:
                    raise KeysUnavailable("the OIDC issuer's keys could not be read a moment ago; "
                                          "not asking again yet")
            elif kid not in self._keys and self._since(self._unknown_refresh_at) >= self.min_refresh_interval:
                # The issuer may have rotated its keys.
                self._unknown_refresh_at = self._clock()
                try:
                    await self._fetch()
                except KeysUnavailable as err:
                    log.warning("the OIDC issuer's keys could not be refreshed: %s", err)
            return self._keys.get(kid)


class TokenVerifier:
    """Verifies bearer tokens of one issuer for one audience."""

    def __init__(self, keys: JwksCache, issuer: str, audience: str, leeway: float) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway

    async def verify(self, authorization: str | None) -> VerifiedCaller:
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise TokenInvalid("no bearer token: send 'Authorization: Bearer <OIDC token>' (a GitHub Actions "
                               "job with 'permissions: id-token: write')")
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenInvalid(f"the token is longer than {MAX_TOKEN_LENGTH} characters")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as err:
            raise TokenInvalid(f"the token is not a JWT: {err}") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise TokenInvalid(f"tokens signed with {alg!r} are not accepted: only {', '.join(ALGORITHMS)}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenInvalid("the token names no key id ('kid')")
        key = await self.keys.key(kid)
        if key is None:
            raise TokenInvalid(f"the token's key id {kid[:64]!r} is not one of the issuer's keys")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=list(ALGORITHMS), audience=self.audience, issuer=self.issuer,
                leeway=self.leeway, options={"require": ["exp", "iat", "nbf", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenInvalid("the token has expired (exp): mint a new one") from None
        except jwt.ImmatureSignatureError:
            raise TokenInvalid("the token is not valid yet (nbf or iat is in the future): check the clocks") from None
        except jwt.InvalidAudienceError:
            raise TokenInvalid(f"the token is for another audience: ask for audience {self.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise TokenInvalid(f"the token was not issued by {self.issuer}") from None
        except jwt.InvalidSignatureError:
            raise TokenInvalid("the token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as err:
            raise TokenInvalid(f"the token has no {err.claim!r} claim") from None
        except jwt.PyJWTError as err:
            raise TokenInvalid(f"the token is not valid: {err}") from None
        repository = claims.get("repository")
        if not isinstance(repository, str):
            raise TokenInvalid("the token has no 'repository' claim (is it a GitHub Actions token?)")
        try:
            check_repo("github", repository, "repository")
        except RequestInvalid as err:
            raise TokenInvalid(f"the token's {err}") from None
        run_attempt = claims.get("run_attempt")
        return VerifiedCaller(
            repository=repository,
            run_id=str(claims.get("run_id") or ""),
            run_attempt=int(run_attempt) if isinstance(run_attempt, str | int) and str(run_attempt).isdigit() else 0,
            subject=str(claims.get("sub") or ""),
        )
