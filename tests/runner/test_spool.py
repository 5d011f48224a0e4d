"""The spool gives back the disk the orchestrator acknowledged, is bounded, and survives a full disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.logbatch import STDOUT
from common.rpc import jobs_pb2, runner_pb2
from runner.spool import Spool
from tests.runner.helpers import read_spool
from tests.runner.test_e2e import run_job


def batch(first: int, lines: int, size: int = 1000) -> runner_pb2.LogBatch:
    made = runner_pb2.LogBatch(first_sequence=first)
    data = b"\n".join(b"%07d " % (first + i) + b"x" * (size - 8) for i in range(lines))
    made.runs.add(step=0, stream=1, at=1.0, lines=lines, data=data)
    return made


def fill(spool: Spool, batches: int, lines: int = 10, first: int = 1) -> int:
    for _ in range(batches):
        spool.append(batch(first, lines), lines)
        first += lines
    return first


def test_a_fully_acknowledged_spool_is_emptied(tmp_path: Path):
    spool = Spool(tmp_path / "j.spool")
    next_line = fill(spool, 50)
    assert spool.path.stat().st_size > 500_000
    spool.ack(next_line - 1)
    assert spool.path.stat().st_size == 0 and spool.disk_bytes == 0
    fill(spool, 1, first=next_line)  # and it goes on from the start
    assert [ln.sequence for ln in read_spool(spool.path)] == list(range(next_line, next_line + 10))
    spool.discard()
    assert not spool.path.exists()


def test_an_acknowledged_prefix_is_compacted_away_and_the_rest_still_reads_back(tmp_path: Path):
    spool = Spool(tmp_path / "j.spool", compact_bytes=200_000)
    next_line = fill(spool, 60)  # ~600 kB
    spool.ack(200)  # 20 batches acknowledged, 40 not: less than what is left, no rewrite yet
    assert spool.path.stat().st_size > 600_000
    spool.ack(320)  # 32 acknowledged, 28 not: never all acked at one moment
    assert spool.path.stat().st_size < 300_000
    unsent = [runner_pb2.LogBatch.FromString(raw).first_sequence for _, raw in spool.unsent(320)]
    assert unsent == list(range(321, next_line, 10))
    assert [ln.sequence for ln in read_spool(spool.path)] == list(range(321, next_line))
    spool.close()


def test_a_long_job_that_is_acknowledged_as_it_goes_keeps_little_on_disk(tmp_path: Path):
    spool = Spool(tmp_path / "j.spool", compact_bytes=1 << 20)
    first, biggest = 1, 0
    for _ in range(2000):  # 20 MB of log, the orchestrator always one batch behind
        spool.append(batch(first, 10), 10)
        spool.ack(first - 1)
        first += 10
        biggest = max(biggest, spool.path.stat().st_size)
    assert biggest < 2 << 20
    spool.close()


def test_a_full_disk_keeps_the_batch_in_memory_and_says_so(tmp_path: Path):
    (tmp_path / "j.spool").symlink_to("/dev/full")  # every write: ENOSPC
    spool = Spool(tmp_path / "j.spool")
    fill(spool, 2)
    assert spool.full.is_set()
    assert spool.full_reason.startswith("VM disk full: cannot write the log spool")
    sent = [runner_pb2.LogBatch.FromString(raw).first_sequence for _, raw in spool.unsent(0)]
    assert sent == [1, 11], "nothing is lost: the batches wait in memory"
    spool.ack(20)
    assert list(spool.unsent(0)) == []
    spool.close()


def test_unacknowledged_lines_are_bounded(tmp_path: Path):
    spool = Spool(tmp_path / "j.spool", max_bytes=100_000)
    fill(spool, 20)  # ~200 kB and nothing acknowledged: the orchestrator is unreachable
    assert spool.full.is_set() and spool.full_reason.startswith("log spool full")
    assert spool.path.stat().st_size <= 100_000
    assert len(list(spool.unsent(0))) == 20
    spool.close()


@pytest.mark.faults
async def test_a_completed_job_leaves_no_spool_on_the_vm(tmp_path: Path):
    """200 000 lines (a few MB) through a real runner: the log's home is the orchestrator, not the VM."""
    steps = [jobs_pb2.Step(name="Loud", run="seq -f 'line %.0f' 1 200000")]
    outcome, lines, code, stderr = await run_job(tmp_path, steps)
    assert code == 0, stderr
    assert outcome.state == jobs_pb2.JOB_STATE_SUCCEEDED
    assert sum(1 for ln in lines if ln.stream == STDOUT) == 200000
    assert list((tmp_path / "vm" / "spool").iterdir()) == []


@pytest.mark.faults
async def test_a_full_vm_disk_fails_the_job_and_loses_no_line(tmp_path: Path):
    spool_dir = tmp_path / "vm" / "spool"
    spool_dir.mkdir(parents=True)
    (spool_dir / "job-1-1.spool").symlink_to("/dev/full")  # every write to the spool: ENOSPC
    # The step runs on (a build filling the disk): the runner must stop it, not wait for it.
    steps = [jobs_pb2.Step(name="Print", run="echo one; echo two; sleep 600"),
             jobs_pb2.Step(name="Never", run="echo never")]
    outcome, lines, code, stderr = await run_job(tmp_path, steps)
    assert code == 0, stderr
    assert outcome.state == jobs_pb2.JOB_STATE_FAILED
    assert outcome.reason.startswith("VM disk full: cannot write the log spool"), outcome.reason
    # stopped during the checkout (skipped) or the step, whichever the first full write met; a
    # step stopped for the job's own failure is failed, not cancelled (nobody cancelled it)
    assert outcome.steps[0].state in (jobs_pb2.STEP_STATE_FAILED, jobs_pb2.STEP_STATE_SKIPPED)
    assert outcome.steps[1].state == jobs_pb2.STEP_STATE_SKIPPED
    # what was logged before the job stopped reached the orchestrator from memory
    assert any("fetching" in ln.text() for ln in lines), [ln.text() for ln in lines]


def test_batches_being_sent_while_acks_empty_or_compact_the_file_stay_whole(tmp_path: Path):
    """The shipper sends from ``unsent`` while acks arrive between its writes."""
    spool = Spool(tmp_path / "j.spool", compact_bytes=100_000)
    fill(spool, 40)  # batches 1, 11, ... 391; ~10 kB each
    sending = spool.unsent(0)
    sent = [runner_pb2.LogBatch.FromString(next(sending)[1]).first_sequence for _ in range(3)]
    spool.ack(250)  # compacts: the offsets of what is left change under the generator
    sent += [runner_pb2.LogBatch.FromString(raw).first_sequence for _, raw in [next(sending)]]
    spool.ack(400)  # everything: the file is emptied
    sent += [runner_pb2.LogBatch.FromString(raw).first_sequence for _, raw in sending]
    assert sent == [1, 11, 21, 251]
    next_line = fill(spool, 2, first=401)
    assert [runner_pb2.LogBatch.FromString(raw).first_sequence for _, raw in spool.unsent(400)] == [401, 411]
    assert next_line == 421
    spool.close()


def test_catching_up_on_a_long_backlog_rewrites_the_file_rarely(tmp_path: Path, monkeypatch):
    """After an outage the acks come in small steps over a big backlog: rewriting the whole
    unacknowledged rest at each step would copy the backlog over and over."""
    spool = Spool(tmp_path / "j.spool", compact_bytes=50_000)
    next_line = fill(spool, 400)  # ~4 MB not acknowledged
    copied = []
    pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, at: copied.append(n) or pread(fd, n, at))
    for acked in range(10, next_line, 10):
        spool.ack(acked)
    assert sum(copied) < 4 * 4_000_000 // 2, "copies stay within the size of the backlog"
    assert spool.disk_bytes == 0
    spool.close()
