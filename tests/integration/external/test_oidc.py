"""OIDC tokens against a local JWKS server, minted by the test with its own keys."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from integration.external.oidc import JwksCache, KeysUnavailable, TokenInvalid, TokenVerifier
from integration.forges.http import ForgeHttp, RetryPolicy
from tests.fakes.oidc import REMOVE, FakeOidcIssuer, new_key
from tests.integration.external.conftest import AUDIENCE

REPO = "acme/l2-ci"


@pytest.fixture
async def verifier(issuer: FakeOidcIssuer) -> AsyncIterator[TokenVerifier]:
    async with aiohttp.ClientSession() as session:
        keys = JwksCache(ForgeHttp(session, "OIDC issuer", RetryPolicy(1, 0.01, 0.01, 5)), issuer.jwks_url,
                         max_age=3600, min_refresh_interval=60)
        yield TokenVerifier(keys, issuer.issuer, AUDIENCE, leeway=30)


async def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenInvalid) as caught:
        await verifier.verify(f"Bearer {token}")
    return str(caught.value)


async def test_a_valid_token_gives_its_repository_and_run(verifier: TokenVerifier, issuer: FakeOidcIssuer):
    caller = await verifier.verify("Bearer " + issuer.mint(REPO, run_id="77", run_attempt="2"))
    assert (caller.repository, caller.run_id, caller.run_attempt) == (REPO, "77", 2)


async def test_time_claims_are_checked_with_the_leeway(verifier: TokenVerifier, issuer: FakeOidcIssuer):
    now = int(time.time())
    assert "expired" in await refused(verifier, issuer.mint(REPO, exp=now - 31, iat=now - 600, nbf=now - 600))
    assert "not valid yet" in await refused(verifier, issuer.mint(REPO, nbf=now + 120))
    assert "not valid yet" in await refused(verifier, issuer.mint(REPO, iat=now + 120))
    # Within the leeway a clock a little off is fine.
    assert (await verifier.verify("Bearer " + issuer.mint(REPO, exp=now - 10, nbf=now + 10))).repository == REPO
    for claim in ("exp", "iat", "nbf"):
        assert f"no {claim!r} claim" in await refused(verifier, issuer.mint(REPO, **{claim: REMOVE}))


async def test_audience_and_issuer_must_be_ours(verifier: TokenVerifier, issuer: FakeOidcIssuer):
    assert "another audience" in await refused(verifier, issuer.mint(REPO, aud="https://github.com/octo-org"))
    assert "not issued by" in await refused(verifier, issuer.mint(REPO, iss="https://token.example.com"))
    assert "no 'repository' claim" in await refused(verifier, issuer.mint(REPO, repository=REMOVE))
    assert "is not a github repository" in await refused(verifier, issuer.mint(REPO, repository="../x"))


async def test_an_unknown_kid_refreshes_the_keys_once_then_is_refused(verifier: TokenVerifier,
                                                                      issuer: FakeOidcIssuer):
    await verifier.verify("Bearer " + issuer.mint(REPO))
    assert issuer.fetches == 1
    stranger = new_key()
    assert "not one of the issuer's keys" in await refused(verifier, issuer.mint(REPO, kid="rogue", key=stranger))
    assert issuer.fetches == 2  # refreshed once, in case the issuer rotated
    for n in range(5):  # more unknown kids within the bound: no more fetches
        await refused(verifier, issuer.mint(REPO, kid=f"rogue-{n}", key=stranger))
    assert issuer.fetches == 2


async def test_a_rotated_key_is_picked_up_by_the_refresh(issuer: FakeOidcIssuer,
                                                         oidc_keys: dict[str, rsa.RSAPrivateKey]):
    async with aiohttp.ClientSession() as session:
        keys = JwksCache(ForgeHttp(session, "OIDC issuer", RetryPolicy(1, 0.01, 0.01, 5)), issuer.jwks_url,
                         max_age=3600, min_refresh_interval=0)
        verifier = TokenVerifier(keys, issuer.issuer, AUDIENCE, leeway=30)
        await verifier.verify("Bearer " + issuer.mint(REPO))
        issuer.keys["key-2"] = oidc_keys["key-2"]
        assert (await verifier.verify("Bearer " + issuer.mint(REPO, kid="key-2"))).repository == REPO
        assert issuer.fetches == 2


async def test_signatures_are_checked_and_none_is_refused(verifier: TokenVerifier, issuer: FakeOidcIssuer):
    token = issuer.mint(REPO)
    head, claims, signature = token.split(".")
    forged = jwt.encode(issuer.claims("acme/l4-ci"), "x" * 32, algorithm="HS256").split(".")[1]
    assert "does not verify" in await refused(verifier, f"{head}.{forged}.{signature}")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert "does not verify" in await refused(verifier, f"{head}.{claims}.{flipped}")
    # Signed by a key that claims a published kid.
    assert "does not verify" in await refused(verifier, issuer.mint(REPO, kid="key-1", key=new_key()))
    assert "'none' are not accepted" in await refused(verifier, issuer.unsigned(issuer.claims(REPO), "key-1"))
    # The public key used as an HMAC secret (algorithm confusion).
    public = issuer.jwks()["keys"][0]["n"]
    confused = jwt.encode(issuer.claims(REPO), public, algorithm="HS256", headers={"kid": "key-1"})
    assert "'HS256' are not accepted" in await refused(verifier, confused)


async def test_what_is_not_a_bearer_token_says_so(verifier: TokenVerifier):
    for header in (None, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer not.a.jwt"):
        with pytest.raises(TokenInvalid):
            await verifier.verify(header)


async def test_an_issuer_that_cannot_be_reached_is_unavailable_not_invalid(issuer: FakeOidcIssuer):
    async with aiohttp.ClientSession() as session:
        keys = JwksCache(ForgeHttp(session, "OIDC issuer", RetryPolicy(1, 0.01, 0.01, 2)),
                         issuer.url + "/nothing-here", max_age=3600, min_refresh_interval=60)
        verifier = TokenVerifier(keys, issuer.issuer, AUDIENCE, leeway=30)
        with pytest.raises(KeysUnavailable):
            await verifier.verify("Bearer " + issuer.mint(REPO))
        with pytest.raises(KeysUnavailable, match="not asking again yet"):
            await verifier.verify("Bearer " + issuer.mint(REPO))
        assert keys.fetches == 1
