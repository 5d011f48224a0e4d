"""GetJob hands secrets out only after recording their delivery; a failed record sends none."""

from __future__ import annotations

import grpc
import pytest

from common.rpc import jobs_pb2, runner_pb2
from common.version import VERSION
from orchestrator.store import StoreUnavailable
from tests.protocol.harness import assigned, bearer, orchestrator, stub

STEPS = [jobs_pb2.Step(name="one", run="true")]
VALUE = "delivery-secret-value"


async def test_each_get_job_records_the_delivery_first_and_a_failed_record_withholds_the_values(tmp_path):
    recorded: list[str] = []
    broken = [False]

    async def on_delivery() -> None:
        if broken[0]:
            raise StoreUnavailable("the state store is down")
        recorded.append("delivered")

    async with orchestrator(tmp_path) as orch:
        trusted = orch.gateway.assign(assigned("job-a", STEPS, secrets={"TOKEN": VALUE}), on_delivery=on_delivery)
        untrusted = orch.gateway.assign(assigned("job-b", STEPS, secrets={"TOKEN": VALUE}, trusted=False),
                                        on_delivery=on_delivery)
        plain = orch.gateway.assign(assigned("job-c", STEPS), on_delivery=on_delivery)
        channel, client = stub(orch.server.address)
        async with channel:
            def get(job_id: str, token: str):  # type: ignore[no-untyped-def]
                request = runner_pb2.GetRunnerJobRequest(job=runner_pb2.JobRef(job_id=job_id, attempt=1),
                                                         runner_version=VERSION)
                return client.GetJob(request, metadata=bearer(token))

            assert dict((await get("job-a", trusted.token)).secrets) == {"TOKEN": VALUE}
            assert recorded == ["delivered"]
            assert dict((await get("job-b", untrusted.token)).secrets) == {}
            assert dict((await get("job-c", plain.token)).secrets) == {}
            assert recorded == ["delivered"]  # nothing handed out, nothing recorded
            broken[0] = True
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await get("job-a", trusted.token)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # the runner retries: GetJob is idempotent
    assert VALUE not in (err.value.details() or "")
    assert recorded == ["delivered"]
