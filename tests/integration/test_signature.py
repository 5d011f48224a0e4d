"""Signature headers and HMAC verification, and the checks before the service sees a delivery."""

from __future__ import annotations

import hashlib
import hmac
import json

from integration.signature import forgejo_signature, github_signature, sign, verify
from tests.integration.stack import GITHUB_SECRET, IntegrationStack, RabbitQueue

BODY = b'{"zen": "Keep it logically awesome."}'


def test_sign_is_hmac_sha256_hex():
    assert sign("s3cret", BODY) == hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()


def test_verify_accepts_only_the_exact_signature():
    good = sign("s3cret", BODY)
    assert verify("s3cret", BODY, good)
    assert verify("s3cret", BODY, good.upper())  # hex digits in either case
    assert not verify("s3cret", BODY, good[:-1] + ("0" if good[-1] != "0" else "1"))
    assert not verify("s3cret", BODY + b"\n", good)
    assert not verify("other", BODY, good)
    assert not verify("s3cret", BODY, None)
    assert not verify("s3cret", BODY, "")
    assert not verify("s3cret", BODY, "é" * 64)  # non-ASCII header value: refused, not an exception


def test_no_configured_secret_accepts_nothing():
    assert not verify("", BODY, sign("", BODY))


def test_header_forms():
    assert github_signature({"X-Hub-Signature-256": "sha256=abc"}) == "abc"
    assert github_signature({"X-Hub-Signature-256": "sha1=abc"}) is None
    assert github_signature({"X-Hub-Signature": "sha1=abc"}) is None  # the SHA-1 header is not accepted
    assert forgejo_signature({"X-Forgejo-Signature": "f"}) == "f"
    assert forgejo_signature({"X-Gitea-Signature": "g"}) == "g"
    assert forgejo_signature({"X-Hub-Signature-256": "sha256=h"}) == "h"
    assert forgejo_signature({}) is None


async def test_delivery_id_must_be_present_and_sane(stack: IntegrationStack, queue: RabbitQueue, payload):
    body = payload("github/push.new-branch")
    status, answer = await stack.deliver_github("push", body, delivery="x" * 129)
    assert (status, answer["result"]) == (400, "bad delivery id")
    raw = json.dumps(body).encode()
    status, answer = await stack.post("/webhooks/github", raw, {
        "X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign(GITHUB_SECRET, raw),
    })
    assert (status, answer["result"]) == (400, "bad delivery id")  # no delivery id header at all
    assert await queue.count() == 0


async def test_missing_event_header_is_400(stack: IntegrationStack):
    status, answer = await stack.post("/webhooks/github", BODY, {
        "X-GitHub-Delivery": "d", "X-Hub-Signature-256": "sha256=" + sign(GITHUB_SECRET, BODY),
    })
    assert (status, answer["result"]) == (400, "missing event")


async def test_secrets_are_masked_in_logs(stack: IntegrationStack):
    from common.log import masker

    assert masker.mask(f"secret is {GITHUB_SECRET}") != f"secret is {GITHUB_SECRET}"
