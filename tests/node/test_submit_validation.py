"""AdminService.Submit checks the whole request before it stores anything (common.validation)."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from common.rpc import admin_pb2, jobs_pb2
from common.validation import MAX_SCRIPT_BYTES
from orchestrator.store import JobFilter
from tests.node.conftest import Cluster
from tests.node.harness import admin_stub, job

Mutation = Callable[[jobs_pb2.JobRequest], None]


def _set(path: str, value: object) -> Mutation:
    def mutate(request: jobs_pb2.JobRequest) -> None:
        target = request
        *parents, name = path.split(".")
        for part in parents:
            target = getattr(target, part)
        setattr(target, name, value)
    return mutate


def _step(**fields: object) -> Mutation:
    return lambda request: request.steps.append(jobs_pb2.Step(**fields))  # type: ignore[arg-type]


# (what is wrong, how, the field the refusal must name)
BAD: list[tuple[str, Mutation, str]] = [
    # the old check let this one through: stored, then refused by the queue, queued forever
    ("a dot in the job id", _set("job_id", "bad.id"), "job_id"),
    ("no job id", _set("job_id", ""), "job_id"),
    ("a run id with a slash", _set("run_id", "run/../x"), "run_id"),
    ("a key that is no workflow job id", _set("key", "Build Me"), "key"),
    ("a label with a wildcard", _set("runs_on", "lab.#"), "runs_on"),
    ("a multi-line name", _set("name", "a\nb"), "name"),
    ("a short sha", _set("checkout.sha", "abc123"), "checkout.sha"),
    ("an upper-case sha", _set("checkout.sha", "A" * 40), "checkout.sha"),
    ("a path in the sha", _set("checkout.sha", "../../../../admin/evil"), "checkout.sha"),
    ("an unknown forge", _set("checkout.forge", "gitlab"), "checkout.forge"),
    ("a query in the repository", lambda r: _set("checkout.repo", "o/r?per_page=1")(r) or _set(
        "checkout.forge", "github")(r), "checkout.repo"),
    ("a ref Solstice cannot fetch", _set("checkout.ref", "refs/heads/feature+x"), "checkout.ref"),
    ("a ref git refuses", _set("checkout.ref", "refs/heads/a..b"), "checkout.ref"),
    ("an ext:: clone URL", _set("checkout.clone_url", "ext::sh -c id"), "checkout.clone_url"),
    ("a plain http clone URL", _set("checkout.clone_url", "http://git.example.test/o/r.git"), "checkout.clone_url"),
    ("a local path on a multi-host node", _set("checkout.clone_url", "/etc"), "checkout.clone_url"),
    ("a file:// URL on a multi-host node", _set("checkout.clone_url", "file:///etc"), "checkout.clone_url"),
    ("no clone URL", _set("checkout.clone_url", ""), "checkout.clone_url"),
    ("a negative pull request", _set("checkout.pull_request", -1), "checkout.pull_request"),
    ("an endless timeout", _set("timeout_seconds", float("inf")), "timeout_seconds"),
    ("a bad env name", lambda r: r.env.update({"A-B": "1"}), "env['A-B']"),
    ("a need that is no job id", lambda r: r.needs.append("../x"), "needs[0]"),
    ("a bad secret name", lambda r: r.secrets.append("1X"), "secrets[0]"),
    ("an empty step", _step(run="   "), "steps[1].run"),
    ("a step leaving the checkout", _step(run="true", workdir="../up"), "steps[1].workdir"),
    ("a script over the size limit", _step(run="x" * (MAX_SCRIPT_BYTES + 1)), "steps[1].run"),
    ("no steps", lambda r: r.ClearField("steps"), "steps"),
]


async def test_each_bad_field_is_refused_naming_it_and_nothing_is_stored(cluster: Cluster) -> None:
    async with cluster.node(cluster.settings()) as node, admin_stub(node) as admin:
        for what, mutate, field in BAD:
            bad = job("second")
            mutate(bad)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                # a valid job first: a refusal of the second must not keep the first
                await admin.Submit(admin_pb2.SubmitRequest(jobs=[job("first"), bad]))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, what
            assert err.value.details().startswith(f"jobs[1].{field}: "), (what, err.value.details())
            assert "\n" not in err.value.details()
        assert await cluster.store.list_jobs(JobFilter(limit=100)) == []
        assert cluster.events.events == []  # no `queued` announced either
        assert await cluster.ready("lab-a") == 0


async def test_submit_of_nothing_and_of_a_duplicate_id_is_refused(cluster: Cluster) -> None:
    async with cluster.node(cluster.settings()) as node, admin_stub(node) as admin:
        for jobs, field in (([], "jobs"), ([job("twice"), job("twice")], "jobs[1].job_id")):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await admin.Submit(admin_pb2.SubmitRequest(jobs=jobs))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details().startswith(f"{field}: ")
        assert await cluster.store.list_jobs(JobFilter(limit=10)) == []


async def test_local_checkouts_are_taken_where_the_node_allows_them(cluster: Cluster, tmp_path) -> None:
    local = job("local-ok")
    local.checkout.forge = "local"
    local.checkout.repo = local.checkout.clone_url = str(tmp_path)
    async with cluster.node(cluster.settings(allow_local_checkouts=True)) as node, admin_stub(node) as admin:
        reply = await admin.Submit(admin_pb2.SubmitRequest(jobs=[local]))
        assert [j.job_id for j in reply.jobs] == ["local-ok"]
        await cluster.finished("local-ok")
