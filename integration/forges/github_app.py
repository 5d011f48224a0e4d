"""GitHub App authentication: an RS256 App JWT, traded for installation tokens.

The App JWT (``iss`` = App id, 9 minutes of life, ``iat`` 60 s in the past
against clock skew) is only used to ask for installation access tokens; those
are cached per installation until ``REFRESH_MARGIN`` before they expire
(GitHub gives them one hour).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jwt

from common.log import masker
from integration.errors import ForgeAuthError, ForgeUnavailable
from integration.forges.http import ForgeHttp

REFRESH_MARGIN = 300.0
JWT_LIFETIME = 540  # GitHub refuses App JWTs living longer than 10 minutes
API_VERSION = "2022-11-28"
USER_AGENT = "solstice-ci"


def github_headers(token_kind: str, token: str) -> dict[str, str]:
    return {
        "Authorization": f"{token_kind} {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
        "User-Agent": USER_AGENT,
    }


def read_private_key(path: Path) -> bytes:
    try:
        key = path.read_bytes()
    except OSError as err:
        raise ForgeAuthError(f"cannot read the GitHub App private key {path}: {err.strerror}") from err
    if b"PRIVATE KEY" not in key:
        raise ForgeAuthError(f"{path} is not a PEM private key (download it from the App's settings page)")
    return key


@dataclass(frozen=True, slots=True)
class InstallationToken:
    token: str
    expires_at: float  # unix time


class GitHubAppAuth:
    """Installation tokens for one GitHub App, cached."""

    def __init__(
        self, http: ForgeHttp, api_url: str, app_id: str, private_key: bytes,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not app_id:
            raise ForgeAuthError("SOLSTICE_GITHUB_APP_ID is not set: the GitHub App id is needed to call the API")
        self.http = http
        self.api_url = api_url.rstrip("/")
        self.app_id = app_id
        self._key = private_key
        self._clock = clock
        self._tokens: dict[int, InstallationToken] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self.tokens_issued = 0

    def app_jwt(self) -> str:
        now = int(self._clock())
        try:
            claims = {"iat": now - 60, "exp": now + JWT_LIFETIME, "iss": self.app_id}
            return jwt.encode(claims, self._key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as err:
            raise ForgeAuthError(f"cannot sign a GitHub App JWT with the configured private key: {err}") from err

    async def token(self, installation_id: int, deadline: float | None = None) -> str:
        """A valid installation token for ``installation_id`` (cached)."""
        cached = self._tokens.get(installation_id)
        if cached and cached.expires_at - REFRESH_MARGIN > self._clock():
            return cached.token
        lock = self._locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            # Another caller may have refreshed it while we waited.
            cached = self._tokens.get(installation_id)
            if cached and cached.expires_at - REFRESH_MARGIN > self._clock():
                return cached.token
            answer = await self.http.request(
                "POST", f"{self.api_url}/app/installations/{installation_id}/access_tokens",
                what=f"installation token for installation {installation_id}",
                headers=github_headers("Bearer", self.app_jwt()), deadline=deadline,
            )
            body = answer.body if isinstance(answer.body, dict) else {}
            token, expires = body.get("token"), body.get("expires_at")
            if not isinstance(token, str) or not isinstance(expires, str):
                raise ForgeUnavailable("GitHub answered the installation token request without token/expires_at")
            fresh = InstallationToken(token, datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp())
            masker.add(token)  # never let a token reach a log line
            self._tokens[installation_id] = fresh
            self.tokens_issued += 1
            return fresh.token

    def forget(self, installation_id: int) -> None:
        """Drop a cached token GitHub refused (revoked, or the clock is off)."""
        self._tokens.pop(installation_id, None)
