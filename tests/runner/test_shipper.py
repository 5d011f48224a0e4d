"""The log shipper's reconnect loop, with a scripted StreamLogs call (races made deterministic)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from common.rpc import runner_pb2
from runner.connection import Backoff, Refused
from runner.shipper import LogShipper, StreamBroken
from runner.spool import Spool


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=code.name)


class Call:
    """One StreamLogs call: acks 0 first; then fails when ``fail`` is set; writes per ``write_error``."""

    def __init__(self, write_error: BaseException | None, read_error: BaseException, first_ack: int = 0) -> None:
        self.first_ack = first_ack
        self.write_error = write_error
        self.read_error = read_error
        self.fail = asyncio.Event()
        self.sent: list[bytes] = []
        self.reads = 0
        self.cancelled = False

    async def read(self) -> runner_pb2.LogAck:
        self.reads += 1
        if self.reads == 1:
            return runner_pb2.LogAck(durable_sequence=self.first_ack)
        await self.fail.wait()
        raise self.read_error

    async def write(self, raw: bytes) -> None:
        if self.write_error is not None:
            raise self.write_error
        self.sent.append(raw)

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class Conn:
    """Just what LogShipper uses of runner.connection.Connection."""

    metadata = ()
    gone = False

    def __init__(self, calls: list[Call]) -> None:
        self.calls = calls
        self.opened: list[Call] = []
        self.missed_errors: list[BaseException] = []

    def stream_logs(self, metadata) -> Call:  # type: ignore[no-untyped-def]
        call = self.calls[min(len(self.opened), len(self.calls) - 1)]
        self.opened.append(call)
        return call

    def backoff(self) -> Backoff:
        return Backoff(0.001, 0.001)

    def reached(self) -> None:
        pass

    def missed(self, err: BaseException) -> None:
        self.missed_errors.append(err)

    def check_final(self, err: grpc.aio.AioRpcError) -> None:
        if err.code() == grpc.StatusCode.PERMISSION_DENIED:
            raise Refused(err.details())


def spool_with_a_batch(tmp_path, batches: int = 1) -> Spool:
    spool = Spool(tmp_path / "s.spool")
    for first in range(1, batches + 1):
        batch = runner_pb2.LogBatch(first_sequence=first)
        batch.runs.add(step=0, stream=1, at=1.0, lines=1, data=b"x")
        spool.append(batch, 1)
    return spool


def firsts(call: Call) -> list[int]:
    return [runner_pb2.LogBatch.FromString(raw).first_sequence for raw in call.sent]


async def test_a_reconnect_resends_only_what_the_orchestrator_lacks(tmp_path):
    """The first call carried all five batches and broke; the orchestrator then says it holds 3."""
    first = Call(None, rpc_error(grpc.StatusCode.UNAVAILABLE))
    second = Call(None, rpc_error(grpc.StatusCode.UNAVAILABLE), first_ack=3)
    spool = spool_with_a_batch(tmp_path, batches=5)
    task = asyncio.create_task(LogShipper(Conn([first, second]), spool).run())  # type: ignore[arg-type]
    try:
        await wait_for(lambda: len(first.sent) == 5, "all five batches on the first call")
        first.fail.set()
        await wait_for(lambda: len(second.sent) == 2, "the resend")
        for _ in range(10):  # and nothing more follows
            await asyncio.sleep(0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    spool.close()
    assert firsts(first) == [1, 2, 3, 4, 5]
    assert firsts(second) == [4, 5]
    assert spool.acked == 3


async def wait_for(cond, what: str) -> None:
    for _ in range(2000):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never: {what}")


async def test_a_write_into_a_finished_call_reconnects_instead_of_dying(tmp_path):
    """grpc raises InvalidStateError (not AioRpcError) for a write after the call ended."""
    broken = Call(asyncio.InvalidStateError("RPC already finished."), rpc_error(grpc.StatusCode.UNAVAILABLE))
    healthy = Call(None, rpc_error(grpc.StatusCode.UNAVAILABLE))
    conn = Conn([broken, healthy])
    spool = spool_with_a_batch(tmp_path)
    task = asyncio.create_task(LogShipper(conn, spool).run())  # type: ignore[arg-type]
    try:
        await wait_for(lambda: healthy.sent, "the batch sent on the next call")
        assert not task.done()
        assert isinstance(conn.missed_errors[0], StreamBroken) and broken.cancelled
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    spool.close()


@pytest.mark.parametrize("rounds", range(4))
async def test_cancel_while_the_stream_fails_stops_the_shipper(tmp_path, rounds):
    """The stream fails in the same loop turn the shipper is cancelled: it must still stop."""
    calls = [Call(None, rpc_error(grpc.StatusCode.UNAVAILABLE)) for _ in range(2)]
    conn = Conn(calls)
    spool = spool_with_a_batch(tmp_path)
    task = asyncio.create_task(LogShipper(conn, spool).run())  # type: ignore[arg-type]
    await wait_for(lambda: calls[0].sent, "the first call to carry the batch")
    for _ in range(rounds):  # vary which turn the cancel lands in
        await asyncio.sleep(0)
    calls[0].fail.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    spool.close()
    assert task in done and task.cancelled(), "the cancellation was swallowed; the runner would hang"


async def test_a_refusal_is_final(tmp_path):
    denied = Call(None, rpc_error(grpc.StatusCode.PERMISSION_DENIED))
    denied.fail.set()
    spool = spool_with_a_batch(tmp_path)
    with pytest.raises(Refused):
        await asyncio.wait_for(LogShipper(Conn([denied]), spool).run(), 5)  # type: ignore[arg-type]
    spool.close()


async def test_a_flush_ends_when_a_refusal_stopped_the_shipper(tmp_path):
    """The session was released (or the token expired) while lines were unacknowledged: the
    orchestrator is not "gone" (it answers, and says no), so only the refusal can end the flush."""
    denied = Call(None, rpc_error(grpc.StatusCode.PERMISSION_DENIED))
    spool = spool_with_a_batch(tmp_path)
    shipper = LogShipper(Conn([denied]), spool)  # type: ignore[arg-type]
    task = asyncio.create_task(shipper.run())
    await wait_for(lambda: denied.sent, "the batch to be sent")
    denied.fail.set()
    await asyncio.gather(task, return_exceptions=True)
    with pytest.raises(Refused, match="logs cannot be delivered"):
        await asyncio.wait_for(shipper.flush(), 5)
    spool.close()


def test_backoff_doubles_up_to_the_cap_with_jitter_and_resets():
    backoff = Backoff(0.1, 1.0)
    delays = [backoff.next_delay() for _ in range(8)]
    for delay, ceiling in zip(delays, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0], strict=False):
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 9) for d in delays[4:]}) > 1, "capped delays still vary (jitter)"
    backoff.reset()
    assert 0.05 <= backoff.next_delay() <= 0.1
