"""Per-job runner tokens: signed, expiring, bound to one job attempt.

The orchestrator issues one token per job attempt and hands it to the VM at
boot; the runner presents it on every RunnerService call. A token is an HS256
JWT (PyJWT, whose signature check is constant-time) with:

    aud    "solstice-runner"   -- the only scope a token has
    sub    the job id
    att    the attempt number
    exp    expiry (unix seconds)
    iat    issue time
    jti    random id, so two tokens of one attempt never look alike

Errors::

    SolsticeError
    └── TokenError          any token refusal
        ├── TokenInvalid    malformed, wrong signature, wrong audience, wrong claims
        └── TokenExpired    correctly signed but past its expiry
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

from common.errors import SolsticeError

AUDIENCE = "solstice-runner"
ALGORITHM = "HS256"
# HS256 keys shorter than the hash output weaken the MAC (RFC 7518 §3.2).
MIN_KEY_BYTES = 32


class TokenError(SolsticeError):
    """A runner token was refused."""


class TokenInvalid(TokenError):
    """The token is not one this orchestrator issued (or was tampered with)."""


class TokenExpired(TokenError):
    """The token was issued here but its lifetime is over."""


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says: which job attempt it may act on, until when."""

    job_id: str
    attempt: int
    expires_at: float


class TokenIssuer:
    """Issues and verifies runner tokens with one HMAC key.

    A token that expires mid-job cuts its runner off: the node issues each
    attempt's token for its job timeout plus every phase around it
    (``issue(..., ttl=...)``); ``ttl_seconds`` is the default and the least.
    ``audience`` is the token's scope: a token of one audience is refused by an
    issuer of another (nodes reading each other's logs use ``solstice-log-peer``).
    """

    def __init__(self, key: bytes, ttl_seconds: float, audience: str = AUDIENCE) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise TokenError(f"the token signing key must be at least {MIN_KEY_BYTES} bytes")
        if ttl_seconds <= 0:
            raise TokenError("token lifetime must be positive")
        self._key = key
        self.ttl_seconds = ttl_seconds
        self.audience = audience

    def __repr__(self) -> str:  # the key is a credential
        return f"TokenIssuer(key=***, ttl_seconds={self.ttl_seconds})"

    def issue(self, job_id: str, attempt: int, now: float | None = None, ttl: float | None = None) -> str:
        """A token for ``job_id``/``attempt`` valid for ``ttl`` (default ``ttl_seconds``) from ``now``."""
        if not job_id:
            raise TokenError("cannot issue a token for an empty job id")
        if ttl is not None and ttl <= 0:
            raise TokenError("token lifetime must be positive")
        issued = time.time() if now is None else now
        claims = {
            "aud": self.audience,
            "sub": job_id,
            "att": int(attempt),
            "iat": int(issued),
            "exp": issued + (self.ttl_seconds if ttl is None else ttl),
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: str) -> TokenClaims:
        """Check signature, audience and expiry; raise TokenInvalid / TokenExpired."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],  # never let the token pick ("none", RS/HS confusion)
                audience=self.audience,
                options={"require": ["exp", "sub", "att", "aud", "jti"]},
            )
        except jwt.ExpiredSignatureError as err:
            raise TokenExpired("the job token has expired") from err
        except jwt.InvalidTokenError as err:
            raise TokenInvalid(f"the job token is not valid: {err}") from err
        job_id, attempt = claims["sub"], claims["att"]
        if not isinstance(job_id, str) or not job_id or not isinstance(attempt, int):
            raise TokenInvalid("the job token does not name a job attempt")
        return TokenClaims(job_id=job_id, attempt=attempt, expires_at=float(claims["exp"]))
