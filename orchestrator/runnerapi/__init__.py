"""The orchestrator's side of RunnerService: what the scheduler uses.

    gateway = RunnerGateway(logstore, TokenIssuer(key, ttl_seconds=...), heartbeat_interval=2.0)
    async with RunnerServer(gateway, host, port) as server:     # RunnerService only
        session = gateway.assign(AssignedJob(job_id, attempt, request, secrets, timeout_seconds),
                                 on_delivery=granted.delivered)  # the audit record, before GetJob sends secrets
        # boot the VM with RunnerBootstrap(server.address, session.token)
        await session.connected.wait()          # first authenticated call
        outcome = await session.wait_finished()  # JobOutcome(state, steps, reason, log_tail)
        gateway.cancel(job_id, attempt, "cancelled by alice")  # reaches the runner on its next heartbeat
        await gateway.release(job_id, attempt)  # always, when the VM is gone; token dead afterwards

``session.last_heartbeat`` (time.monotonic) lets the scheduler declare a
silent runner lost (then ``release(..., reason)`` ends it ``errored``). The
runner enforces step and job timeouts itself; the scheduler should still put
a deadline of ``timeout_seconds`` plus a margin on ``wait_finished``.
``on_step`` (given to ``assign``) is awaited for every step start/finish.
Logs go to ``gateway.logstore``; ``(await store.open(job, attempt)).follow()``
serves live tails.
"""

from orchestrator.runnerapi.gateway import (
    DEFAULT_SHELL,
    AssignedJob,
    GatewayError,
    JobOutcome,
    RunnerGateway,
    RunnerSession,
)
from orchestrator.runnerapi.server import RunnerServer, ServerError

__all__ = [
    "DEFAULT_SHELL",
    "AssignedJob",
    "GatewayError",
    "JobOutcome",
    "RunnerGateway",
    "RunnerServer",
    "RunnerSession",
    "ServerError",
]
