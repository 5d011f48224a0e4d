"""A job's test summary through a node: from Complete to the store (job page) and the terminal event (forge)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.store import JobState
from tests.node.conftest import Cluster
from tests.node.harness import job

REPORT = """<testsuite><testcase classname="t" name="ok"/>
<testcase classname="t" name="bad" file="t.py" line="4"><failure message="boom"/></testcase></testsuite>"""


async def test_the_summary_is_stored_and_carried_by_the_final_event(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "unit.xml").write_text(REPORT)
    request = job("reported", steps=("exit 1",))
    request.junit.append("results/*.xml")
    request.env["FAKE_CHECKOUT"] = str(tmp_path)
    plain = job("plain")
    async with cluster.node(cluster.settings()):
        await cluster.publish(request, plain)
        assert (await cluster.finished("reported")).state is JobState.FAILED
        assert (await cluster.finished("plain")).state is JobState.SUCCEEDED
        summary = await cluster.store.test_summary("reported", 1)
        assert summary is not None and (summary.passed, summary.failed, summary.files) == (1, 1, 1)
        assert [(f.title, f.message, f.file, f.line) for f in summary.failures] == [("t.bad", "boom", "t.py", 4)]
        assert await cluster.store.test_summary("plain", 1) is None
        [final] = cluster.events.terminal("reported")
        assert (final.tests.passed, final.tests.failed, final.tests.failures[0].name) == (1, 1, "bad")
        [other] = cluster.events.terminal("plain")
        assert not other.HasField("tests")
