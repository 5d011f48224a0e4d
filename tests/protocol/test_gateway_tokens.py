"""``RunnerGateway.verify``: the token of a session still assigned is not signature-checked again,
but everything a full check refuses is still refused (expired, released, forged)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.rpc import jobs_pb2
from common.tokens import TokenClaims, TokenExpired, TokenInvalid, TokenIssuer
from orchestrator.logstore import LogStore
from orchestrator.runnerapi import AssignedJob, RunnerGateway
from tests.waiting import async_wait_until


class CountingIssuer(TokenIssuer):
    def __init__(self, ttl: float) -> None:
        super().__init__(os.urandom(32), ttl)
        self.full_checks = 0

    def verify(self, token: str) -> TokenClaims:
        self.full_checks += 1
        return super().verify(token)


def assign(gateway: RunnerGateway, job_id: str, attempt: int = 1):  # type: ignore[no-untyped-def]
    return gateway.assign(AssignedJob(job_id, attempt, jobs_pb2.JobRequest(job_id=job_id)))


async def test_a_live_sessions_token_skips_the_signature_check_until_released(tmp_path: Path) -> None:
    issuer = CountingIssuer(3600.0)
    async with LogStore(tmp_path / "logs") as logstore:
        gateway = RunnerGateway(logstore, issuer)
        session = assign(gateway, "j1", 2)
        for _ in range(3):
            claims = gateway.verify(session.token)
            assert (claims.job_id, claims.attempt) == ("j1", 2)
        assert issuer.full_checks == 0
        with pytest.raises(TokenInvalid):  # not ours: the full check runs and refuses
            gateway.verify(TokenIssuer(os.urandom(32), 3600.0).issue("j1", 2))
        assert issuer.full_checks == 1
        await gateway.release("j1", 2)
        # Released: a full check again (the signature is still good; the servicer then finds no session).
        assert gateway.verify(session.token).job_id == "j1"
        assert issuer.full_checks == 2 and gateway.session("j1", 2) is None


async def test_an_expired_token_is_refused_even_while_its_session_is_assigned(tmp_path: Path) -> None:
    issuer = CountingIssuer(1.0)
    async with LogStore(tmp_path / "logs") as logstore:
        gateway = RunnerGateway(logstore, issuer)
        session = assign(gateway, "j1")
        assert gateway.verify(session.token).job_id == "j1"

        def expired() -> bool:
            try:
                gateway.verify(session.token)
            except TokenExpired:
                return True
            return False
        await async_wait_until(expired, timeout=10, what="the token to expire")
        assert gateway.session("j1", 1) is session  # still assigned, yet refused
        await gateway.release("j1", 1)
