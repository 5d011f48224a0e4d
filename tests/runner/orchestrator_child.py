"""An orchestrator in its own process, for the kill -9 test.

argv: LOGDIR PORT SPEC_JSON. Serves RunnerService on 127.0.0.1:PORT (0 picks
one) with the test signing key, assigns the one job SPEC_JSON describes
(``clone_url``, ``sha``, ``script``), prints ``{"port": P, "token": T}`` as
one JSON line, then ``{"finished": STATE}`` when the runner completes, and
exits 0. A restarted child (same LOGDIR and PORT) picks the job's log up from
disk; the runner's first token stays valid because the key is the same.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from common.rpc import jobs_pb2
from common.tokens import TokenIssuer
from orchestrator.logstore import LogStore
from orchestrator.runnerapi import RunnerGateway, RunnerServer
from tests.protocol.harness import KEY, assigned


async def main(logdir: Path, port: int, spec: dict[str, str]) -> int:
    store = LogStore(logdir)
    gateway = RunnerGateway(store, TokenIssuer(KEY, ttl_seconds=600), heartbeat_interval=0.2)
    server = RunnerServer(gateway, port=port, grace_seconds=0)
    await server.start()
    try:
        job = assigned("job-1", [jobs_pb2.Step(name="Numbers", run=spec["script"])],
                       clone_url=spec["clone_url"], sha=spec["sha"])
        session = gateway.assign(job)
        print(json.dumps({"port": server.port, "token": session.token}), flush=True)
        outcome = await session.wait_finished()
        print(json.dumps({"finished": jobs_pb2.JobState.Name(outcome.state)}), flush=True)
    finally:
        await server.stop(grace=0)
        await store.aclose()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]))))
