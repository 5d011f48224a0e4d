"""Runner tokens: bound to one job attempt, signed, expiring."""

from __future__ import annotations

import time

import jwt
import pytest

from common.tokens import TokenError, TokenExpired, TokenInvalid, TokenIssuer

KEY = b"k" * 32


def test_round_trip_names_the_attempt():
    issuer = TokenIssuer(KEY, ttl_seconds=60)
    before = time.time()
    claims = issuer.verify(issuer.issue("job-1", 3))
    assert (claims.job_id, claims.attempt) == ("job-1", 3)
    assert before + 59 <= claims.expires_at <= time.time() + 61


def test_two_tokens_of_one_attempt_differ():
    issuer = TokenIssuer(KEY, ttl_seconds=60)
    assert issuer.issue("job-1", 1) != issuer.issue("job-1", 1)


def test_expired():
    issuer = TokenIssuer(KEY, ttl_seconds=10)
    token = issuer.issue("job-1", 1, now=time.time() - 11)
    with pytest.raises(TokenExpired):
        issuer.verify(token)


def test_other_key_is_invalid():
    token = TokenIssuer(b"o" * 32, ttl_seconds=60).issue("job-1", 1)
    with pytest.raises(TokenInvalid):
        TokenIssuer(KEY, ttl_seconds=60).verify(token)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30."])
def test_garbage_is_invalid(token):
    with pytest.raises(TokenInvalid):
        TokenIssuer(KEY, ttl_seconds=60).verify(token)


def test_alg_none_and_wrong_audience_refused():
    claims = {"sub": "job-1", "att": 1, "exp": time.time() + 60, "jti": "x", "aud": "solstice-runner"}
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    with pytest.raises(TokenInvalid):
        TokenIssuer(KEY, ttl_seconds=60).verify(unsigned)
    other_scope = jwt.encode({**claims, "aud": "admin"}, KEY, algorithm="HS256")
    with pytest.raises(TokenInvalid):
        TokenIssuer(KEY, ttl_seconds=60).verify(other_scope)


def test_tampered_payload_refused():
    issuer = TokenIssuer(KEY, ttl_seconds=60)
    head, _, sig = issuer.issue("job-1", 1).split(".")
    forged_body = jwt.encode({"sub": "job-2", "att": 1, "exp": time.time() + 60, "jti": "x",
                              "aud": "solstice-runner"}, b"z" * 32).split(".")[1]
    with pytest.raises(TokenInvalid):
        issuer.verify(f"{head}.{forged_body}.{sig}")


def test_short_key_refused_and_key_not_in_repr():
    with pytest.raises(TokenError):
        TokenIssuer(b"short", ttl_seconds=60)
    assert "kkkk" not in repr(TokenIssuer(KEY, ttl_seconds=60))
