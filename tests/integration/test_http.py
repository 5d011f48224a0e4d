"""``ForgeHttp``: capped, jittered backoff on 5xx and network errors; 4xx raised at once with the forge's message."""

from __future__ import annotations

import logging
import socket

import pytest

from integration.errors import ForgeRejected, ForgeUnavailable
from integration.forges.http import ForgeHttp, RetryPolicy
from tests.fakes.forges import FakeForgejo

FAST = RetryPolicy(attempts=4, backoff_initial=0.01, backoff_max=0.02, request_timeout=5)
HEADERS = {"Authorization": "token fj-token", "User-Agent": "solstice-test"}
STATUS_PATH = "/api/v1/repos/gitea/webhooks/statuses/" + "a" * 40


def test_backoff_doubles_and_is_capped():
    policy = RetryPolicy(attempts=20, backoff_initial=0.5, backoff_max=30.0)
    for attempt in range(1, 20):
        ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
        pauses = [policy.pause(attempt) for _ in range(50)]
        # jitter keeps each pause in [ceiling/2, ceiling]; never above the cap
        assert all(ceiling / 2 <= p <= ceiling <= 30.0 for p in pauses), (attempt, min(pauses), max(pauses))
    assert max(policy.pause(60) for _ in range(50)) <= 30.0  # no overflow far past the cap


async def test_5xx_is_retried_until_it_works(forgejo: FakeForgejo, http):
    forgejo.fail_next(3, status=503, path_contains="/statuses/")
    forge = ForgeHttp(http, "Forgejo", FAST)
    answer = await forge.request("POST", forgejo.url + STATUS_PATH, what="status", headers=HEADERS,
                                body={"state": "pending", "context": "solstice/build"})
    assert answer.status == 201
    assert [c.status for c in forgejo.calls] == [503, 503, 503, 201]


async def test_attempts_run_out_with_the_last_error(forgejo: FakeForgejo, http):
    forgejo.fail_next(100, status=502)
    forge = ForgeHttp(http, "Forgejo", FAST)
    with pytest.raises(ForgeUnavailable, match="HTTP 502: Server Error"):
        await forge.request("POST", forgejo.url + STATUS_PATH, what="status", headers=HEADERS,
                           body={"state": "pending"})
    assert len(forgejo.calls) == FAST.attempts


async def test_network_errors_are_retried(http, caplog):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    forge = ForgeHttp(http, "GitHub", FAST)
    caplog.set_level(logging.WARNING, logger="integration")
    with pytest.raises(ForgeUnavailable, match="ClientConnectorError"):
        await forge.request("GET", f"http://127.0.0.1:{port}/repos/o/r/contents/x", what="read x", headers=HEADERS)
    retries = [r for r in caplog.records if r.getMessage() == "GitHub read x failed, retrying"]
    assert len(retries) == FAST.attempts - 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_4xx_is_not_retried_and_carries_the_forges_message(forgejo: FakeForgejo, http, status):
    forgejo.fail_next(1, status=status)
    forge = ForgeHttp(http, "Forgejo", FAST)
    with pytest.raises(ForgeRejected) as caught:
        await forge.request("POST", forgejo.url + STATUS_PATH, what="status", headers=HEADERS,
                           body={"state": "pending"})
    assert caught.value.status == status
    assert caught.value.forge_message == "Server Error (injected)"
    assert len(forgejo.calls) == 1


async def test_schema_refusal_is_a_4xx_with_the_validation_message(forgejo: FakeForgejo, http):
    forge = ForgeHttp(http, "Forgejo", FAST)
    with pytest.raises(ForgeRejected, match="state") as caught:
        await forge.request("POST", forgejo.url + STATUS_PATH, what="status", headers=HEADERS,
                           body={"state": "running"})
    assert caught.value.status == 422
    assert len(forgejo.calls) == 1


async def test_allowed_statuses_are_answers_not_errors(forgejo: FakeForgejo, http):
    forge = ForgeHttp(http, "Forgejo", FAST)
    answer = await forge.request(
        "GET", forgejo.url + "/api/v1/repos/gitea/webhooks/contents/missing?ref=" + "a" * 40,
        what="read missing", headers=HEADERS, allow=(404,),
    )
    assert answer.status == 404 and len(forgejo.calls) == 1
