"""Greenness degree and last-green of commit sequences, on both store back-ends."""

from __future__ import annotations

from integration.greenness.degree import judge
from integration.greenness.model import JobRecord, Status
from integration.greenness.settings import GreennessSettings, QueueSettings
from integration.greenness.store import SqlGreennessStore
from tests.integration.greenness.conftest import make_runner
from tests.integration.greenness.support import QUEUE, Clock, sha, workflow

OK, FAIL = "succeeded", "failed"


def test_degree_is_the_weighted_share_of_required_jobs_not_green():
    jobs = [JobRecord("a", True, 3.0, (), OK), JobRecord("b", True, 1.0, (), FAIL, "exit 1"),
            JobRecord("c", False, 1.0, (), FAIL)]  # not required: does not count
    verdict = judge(jobs, 0, 60)
    assert (verdict.status, verdict.degree) == (Status.NOT_GREEN, 0.25)
    assert verdict.reasons == ("b failed: exit 1",)
    all_failed = judge([JobRecord("a", True, 1, (), "cancelled"), JobRecord("b", True, 1, (), "errored")], 0, 60)
    assert all_failed.degree == 1.0
    assert judge([JobRecord("a", True, 1, (), OK)], 0, 60).status is Status.GREEN
    waiting = judge([JobRecord("a", True, 1, (), OK), JobRecord("b", True, 1, ())], 10, 60)
    assert (waiting.status, waiting.degree, waiting.reasons) == (Status.PENDING, None, ("waiting for b",))
    late = judge([JobRecord("a", True, 1, (), OK), JobRecord("b", True, 1, ())], 60, 60)
    assert late.status is Status.INCOMPLETE and "b did not report within 1m" in late.reasons[0]
    # Fail-closed: nothing required is not green.
    assert judge([JobRecord("a", False, 1, (), OK)], 0, 60).status is Status.NOT_GREEN


async def test_a_sequence_of_mixed_commits_moves_last_green(gstore: SqlGreennessStore, clock: Clock):
    settings = GreennessSettings(enabled=True, queues={"main": QueueSettings(
        repo="forgejo:acme/app", ref="refs/heads/main", weights={"build": 3})})
    runner = make_runner(gstore, clock, settings)
    wf = workflow("build", "lint", "docs", optional=("docs",))
    c1, c2, c3, c4 = sha("c1"), sha("c2"), sha("c3"), sha("c4")
    for c in (c1, c2, c3, c4):
        assert await runner.push(c, wf) == ["build", "lint", "docs"]
    state = await gstore.scope_state(QUEUE)
    assert state.last_green is None and state.head is None  # "not yet recorded" is never green

    await runner.finish(c1, {"build": OK, "lint": OK, "docs": FAIL})  # docs is not required
    await runner.finish(c2, {"build": OK, "lint": FAIL}, reason="ruff: 3 errors")
    await runner.finish(c3, {"build": FAIL, "lint": FAIL})
    state = await gstore.scope_state(QUEUE)
    assert state.last_green and state.last_green.sha == c1
    assert state.head and state.head.sha == c3 and state.head.verdict.degree == 1.0
    verdicts = {v.sha: v.verdict for v in await gstore.commits(QUEUE)}
    assert verdicts[c1].degree == 0.0 and verdicts[c2].degree == 0.25  # lint weighs 1 of 4
    assert verdicts[c2].reasons == ("lint failed: ruff: 3 errors",)
    assert verdicts[c4].status is Status.PENDING

    await runner.finish(c4, {"build": OK, "lint": OK})
    state = await gstore.scope_state(QUEUE)
    assert state.last_green and state.last_green.sha == c4 and state.green
    events = [(h.sha, h.event) for h in reversed(await gstore.history(QUEUE))]
    assert events == [(c1, "became green"), (c2, "not green"), (c3, "not green"), (c4, "became green")]


async def test_a_rerun_flips_a_commit_to_green_and_moves_last_green_forward(gstore: SqlGreennessStore, clock: Clock):
    runner = make_runner(gstore, clock)
    wf = workflow("build", "test")
    c1, c2 = sha("r1"), sha("r2")
    await runner.push(c1, wf)
    await runner.push(c2, wf)
    await runner.finish(c1, {"build": OK, "test": OK})
    await runner.finish(c2, {"build": OK, "test": FAIL}, reason="flaky")
    assert (await gstore.scope_state(QUEUE)).last_green.sha == c1  # type: ignore[union-attr]
    # A late event of the first attempt changes nothing; the re-run (attempt 2) does.
    assert await runner.finish(c2, {"test": OK}, attempt=0) == []
    made = await runner.finish(c2, {"test": OK}, attempt=2)
    state = await gstore.scope_state(QUEUE)
    assert state.last_green and state.last_green.sha == c2
    assert [(t.state, t.commit, t.previous_last_green) for t in made] == [("green", c2, c1)]
    # And back: a re-run that fails makes it stop being green; last-green moves back (re-entrant, never final).
    await runner.finish(c2, {"test": FAIL}, attempt=3, reason="really broken")
    state = await gstore.scope_state(QUEUE)
    assert state.last_green and state.last_green.sha == c1 and not state.green
    assert (await gstore.history(QUEUE))[0].event == "stopped being green"


async def test_a_dead_lettered_job_keeps_its_commit_not_green(gstore: SqlGreennessStore, clock: Clock):
    runner = make_runner(gstore, clock)
    c1 = sha("dl")
    await runner.push(c1, workflow("build", "test"))
    await runner.finish(c1, {"build": OK})
    await runner.finish(c1, {"test": "failed"}, reason="dead-lettered: the request could not be delivered")
    [verdict] = await gstore.commits(QUEUE)
    assert verdict.verdict.status is Status.NOT_GREEN and verdict.verdict.degree == 0.5
    assert "dead-lettered" in verdict.verdict.reasons[0]
    assert (await gstore.scope_state(QUEUE)).last_green is None


async def test_a_commit_whose_jobs_do_not_all_report_is_incomplete(gstore: SqlGreennessStore, clock: Clock):
    runner = make_runner(gstore, clock, GreennessSettings(enabled=True, incomplete_after=600))
    c1 = sha("late")
    await runner.push(c1, workflow("build", "test"))
    await runner.finish(c1, {"build": OK})
    assert await runner.recorder.sweep() == 0  # not yet
    clock.now += 601
    assert await runner.recorder.sweep() == 1
    [verdict] = await gstore.commits(QUEUE)
    assert verdict.verdict.status is Status.INCOMPLETE and verdict.verdict.degree is None
    assert "test did not report within 10m" in verdict.verdict.reasons[0]
    state = await gstore.scope_state(QUEUE)
    assert state.head and state.head.sha == c1 and state.last_green is None
    # The job reports after all: the commit is judged again.
    await runner.finish(c1, {"test": OK})
    assert (await gstore.scope_state(QUEUE)).last_green.sha == c1  # type: ignore[union-attr]


async def test_a_repeated_head_is_one_commit_of_its_queue(gstore: SqlGreennessStore, clock: Clock):
    runner = make_runner(gstore, clock)
    c1 = sha("dup")
    wf = workflow("build")
    assert not await runner.recorder.seen(runner_build(c1))
    await runner.push(c1, wf)
    assert await runner.recorder.seen(runner_build(c1))
    await runner.push(c1, wf)  # again (a deferred retry of the same build): nothing new
    assert len(await gstore.commits(QUEUE)) == 1
    # Another ref is another queue.
    assert not await runner.recorder.seen(runner_build(c1, "refs/heads/release"))


def runner_build(commit: str, ref: str = "refs/heads/main"):
    from tests.integration.greenness.support import build
    return build(commit, ref)


async def test_required_external_results_count_towards_the_degree(gstore: SqlGreennessStore, clock: Clock):
    column = "external / lab/riscv-ci / boot"
    settings = GreennessSettings(enabled=True, queues={"main": QueueSettings(
        repo="forgejo:acme/app", ref="refs/heads/main", external_required=(column,))})
    runner = make_runner(gstore, clock, settings)
    c1, c2 = sha("x1"), sha("x2")
    for c in (c1, c2):
        await runner.push(c, workflow("build"))
        await runner.finish(c, {"build": OK})
    assert (await gstore.scope_state(QUEUE)).last_green is None  # the lab has not reported
    assert await runner.recorder.record_external("forgejo", "acme/app", c1, column, OK) == 1
    assert await runner.recorder.record_external("forgejo", "acme/app", c2, column, FAIL, "concluded failure") == 1
    state = await gstore.scope_state(QUEUE)
    assert state.last_green and state.last_green.sha == c1
    assert state.head and state.head.verdict.reasons == (f"external:{column} failed: concluded failure",)
    assert await runner.recorder.record_external("forgejo", "acme/app", sha("unknown"), column, OK) == 0
