"""A runner that dies mid-job: the node ends the attempt ``errored`` after ``runner_silence``,
and the local driver's teardown kills the step processes the runner left behind.

The real ``solstice-runner`` runs under the real local driver; its step
SIGKILLs the runner (its parent) and leaves a background and a foreground
``sleep``. The job's own timeout is far away, so only the silence can end it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common.config import Seconds
from orchestrator.catalog import LocalConfig
from orchestrator.drivers.local import LocalDriver, process_start_time
from orchestrator.store import JobState
from tests.node.harness import job, local_node, local_settings
from tests.runner.helpers import make_repo
from tests.waiting import async_wait_until

RUNNER = str(Path(sys.executable).parent / "solstice-runner")


async def test_a_runner_killed_mid_job_ends_errored_and_its_steps_die(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README": "hi\n"})
    pids = tmp_path / "pids"
    pids.mkdir()
    step = (f"sleep 300 & echo $! > {pids}/background; echo $$ > {pids}/step; "
            "echo about to kill the runner; kill -9 $PPID; sleep 300")
    settings = local_settings(tmp_path / "node", timeouts__runner=Seconds(60), timeouts__runner_silence=Seconds(2),
                              timeouts__job_margin=Seconds(60))
    # Uncontained: a contained job's steps run as the job user, who cannot signal the runner at all
    # (and whose processes die with the namespace when the runner does: test_contained.py).
    driver = LocalDriver(LocalConfig(state_dir=tmp_path / "vms", runner_argv=(RUNNER, "run"), stop_grace=Seconds(2),
                                     contain=False))
    request = job("j-silent", steps=(step,), timeout=600.0)
    request.checkout.clone_url = repo.url
    request.checkout.sha = repo.sha
    request.trusted = True  # an uncontained node runs trusted jobs only
    async with local_node(settings, driver=driver) as node:  # type: ignore[arg-type]
        await node.publish(request)

        async def finished():  # type: ignore[no-untyped-def]
            record = await node.store.get_job("j-silent")
            return record if record is not None and record.terminal and node.events.terminal("j-silent") else None
        record = await async_wait_until(finished, timeout=60, what="the silent runner's job to end")
        assert record.state is JobState.ERRORED, record.reason
        assert record.reason.startswith("the runner stopped answering for 2s")
        [event] = node.events.terminal("j-silent")
        assert event.reason == record.reason
        # Finalized only after teardown: the step's processes are gone by now.
        for name in ("background", "step"):
            pid = int((pids / name).read_text())
            assert process_start_time(pid) is None, f"the step's {name} process {pid} outlived the VM"
        assert await driver.list_owned() == set()
