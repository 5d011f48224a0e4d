"""Sends spooled log batches home over StreamLogs, resuming after every break.

Each connection starts with the orchestrator's ack of what it already holds;
the shipper then sends every spooled batch past that point, in order, and
drops batches from the spool index as acks arrive. A reconnect therefore
resends exactly the unacknowledged lines, and the orchestrator drops any
overlap, so none is lost or doubled. ``flush`` ends with the shipper: a
refusal that stopped it (an expired token, a released session) is raised
there too, never waited on.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from common.backoff import Backoff
from common.rpc import runner_pb2
from runner.connection import Connection, ConnectionError_, OrchestratorGone, Refused
from runner.spool import Spool

log = logging.getLogger(__name__)


class StreamBroken(Exception):
    """The log stream ended without an error status (server shut down)."""


class LogShipper:
    """Owns the StreamLogs call; run ``run()`` as a task for the job's lifetime."""

    def __init__(self, conn: Connection, spool: Spool) -> None:
        self.conn = conn
        self.spool = spool
        self.stopped: BaseException | None = None  # why ``run`` ended, if it did not just get cancelled

    async def run(self) -> None:
        backoff = self.conn.backoff()
        try:
            while True:
                try:
                    await self._stream(backoff)
                except grpc.aio.AioRpcError as err:
                    self.conn.check_final(err)
                    self.conn.missed(err)
                except StreamBroken as err:
                    self.conn.missed(err)
                await asyncio.sleep(backoff.next_delay())
        except Exception as err:
            self.stopped = err  # a flush waiting for acks that cannot come now ends (it looks twice a second)
            raise

    async def _stream(self, backoff: Backoff) -> None:
        call = self.conn.stream_logs(metadata=self.conn.metadata)
        # Two plain tasks rather than a TaskGroup: on Python 3.11 a TaskGroup
        # whose child fails while the shipper itself is being cancelled can
        # swallow that cancellation, and the runner then never exits.
        tasks: list[asyncio.Task[None]] = []
        try:
            first = await call.read()
            if not isinstance(first, runner_pb2.LogAck):  # grpc.aio.EOF
                raise StreamBroken("log stream closed before its first ack")
            self.conn.reached()
            backoff.reset()
            self.spool.ack(first.durable_sequence)
            tasks = [asyncio.create_task(self._acks(call), name="log-acks"),
                     asyncio.create_task(self._send(call, first.durable_sequence), name="log-send")]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            # Both run until they fail. The call's status (a refusal is final)
            # beats "the stream broke", which is all the other side may know.
            errors = [e for t in tasks if t.done() and not t.cancelled() and (e := t.exception()) is not None]
            raise next((e for e in errors if isinstance(e, grpc.aio.AioRpcError)), errors[0])
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            call.cancel()

    async def _acks(self, call: grpc.aio.StreamStreamCall[bytes, runner_pb2.LogAck]) -> None:
        while True:
            ack = await call.read()
            if not isinstance(ack, runner_pb2.LogAck):  # grpc.aio.EOF
                raise StreamBroken("the orchestrator closed the log stream")
            self.spool.ack(ack.durable_sequence)

    async def _send(self, call: grpc.aio.StreamStreamCall[bytes, runner_pb2.LogAck], sent: int) -> None:
        while True:
            waiting = self.spool.change_event()
            progressed = False
            for last, raw in self.spool.unsent(sent):
                try:
                    await call.write(raw)
                except asyncio.InvalidStateError as err:  # the call ended under us
                    raise StreamBroken(f"the log stream ended while sending: {err}") from None
                sent, progressed = last, True
            if not progressed:
                await waiting.wait()

    async def flush(self) -> None:
        """Return once every spooled line is durable at the orchestrator;
        raise OrchestratorGone when it stays unreachable past the limit."""
        while not self.spool.all_acked:
            if self.stopped is not None:
                if isinstance(self.stopped, Refused):
                    raise Refused(f"logs cannot be delivered: {self.stopped}") from self.stopped
                raise ConnectionError_(f"the log shipper stopped: {self.stopped!r}") from self.stopped
            if self.conn.gone:
                raise OrchestratorGone(
                    f"{self.spool.last_sequence - self.spool.acked} log lines could not be "
                    f"delivered; they are kept in {self.spool.path}"
                )
            await self.spool.changed(timeout=0.5)
