"""Single-node queue only: a killed process loses nothing, and poison rows are dead-lettered."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from pathlib import Path

from tests.queue.conftest import LocalHarness, Recorder, job
from tests.waiting import async_wait_until

# A node that takes jobs and never finishes them, printing each job id it got.
NODE = """
import asyncio, sys
from orchestrator.queue import LocalQueue

async def main():
    async def on_job(request):
        print(request.job_id, flush=True)
        await asyncio.Event().wait()

    async def on_dead_letter(job_id, reason):
        pass

    queue = LocalQueue(sys.argv[1], ["a"], on_job, on_dead_letter, free_slots=2)
    await queue.start()
    await queue.publish([{jobs}])
    print("published", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_restart_after_kill_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite"
    jobs = ", ".join(f"job({name!r}, 'a')" for name in ("j1", "j2", "j3", "j4"))
    script = "from tests.queue.conftest import job\n" + NODE.replace("{jobs}", jobs)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(path),
        stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).resolve().parents[2],
    )
    assert process.stdout is not None
    lines = []
    try:
        while len(lines) < 3:  # "published" and the two jobs its two free slots let in
            line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
            assert line, "the node process exited early"
            lines.append(line.decode().strip())
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    assert sorted(lines) == ["j1", "j2", "published"]

    harness = LocalHarness(path)
    recorder = Recorder()
    try:
        await harness.node(["a"], recorder, free_slots=4)
        await async_wait_until(lambda: len(recorder.acked) == 4, timeout=60, what="all four jobs after restart")
        assert sorted(recorder.acked) == ["j1", "j2", "j3", "j4"]
        assert await harness.ready("a") == 0
    finally:
        await harness.close()

    # Acked jobs are gone for good: a third start delivers nothing more.
    again = LocalHarness(path)
    third = Recorder()
    try:
        await again.node(["a"], third)
        await again.publish([job("marker", "a")])
        await async_wait_until(lambda: third.acked == ["marker"], timeout=60, what="marker job")
        assert third.job_ids == ["marker"]
    finally:
        await again.close()


async def test_poison_row_is_dead_lettered(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite"
    harness = LocalHarness(path)
    first = Recorder()
    try:
        node = await harness.node(["a"], first, free_slots=0)
        await harness.publish([job("old", "a"), job("fine", "a")])
        await node.stop()
        # Simulate a row written by a future version and one damaged on disk.
        with sqlite3.connect(path) as db:
            future = job("old", "a")
            future.schema_version = 7
            db.execute("UPDATE queue_jobs SET body = ? WHERE job_id = 'old'", (future.SerializeToString(),))
            db.execute(
                "INSERT INTO queue_jobs (job_id, label, body, enqueued_at) VALUES ('broken', 'a', ?, 0)",
                (b"\xff\xff\xff",),
            )
        recorder = Recorder()
        node = await harness.node(["a"], recorder)
        await async_wait_until(lambda: len(recorder.dead) == 2 and recorder.acked, timeout=60, what="dead letters")
        assert recorder.acked == ["fine"]
        assert sorted(recorder.dead) == [
            ("broken", "the message is not a JobRequest (Error parsing message with type "
                       "'solstice.v1.JobRequest': Wire format was corrupt)"),
            ("old", "unknown schema_version 7 (this node understands 1)"),
        ]
        assert await node.dead_letters() == [(job_id, reason) for job_id, reason in recorder.dead]
    finally:
        await harness.close()
