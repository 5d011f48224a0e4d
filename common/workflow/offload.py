"""Parse workflow files away from the event loop, each against a deadline.

A server that reads a fork author's workflow must not stop serving while it
does: ``WorkflowParser.parse`` checks the file's size on the loop (cheap,
and a file over ``max_file_bytes`` never reaches the parser), then parses it
in a worker process. The worker arms an interval timer of
``limits.parse_seconds``; a parse still running when it fires is stopped and
the file reported invalid ("took longer than 5s to read"). A worker that does
not answer even ``KILL_AFTER`` seconds past the deadline (stuck where no
signal reaches) is killed and the pool replaced.

Processes, not threads: a parse is pure-Python CPU work, which in a thread
would still take turns with the event loop for the GIL and could not be
stopped. Workers come from a ``forkserver`` (forking the threaded server
itself is unsafe) with the parser preloaded, run at a lower priority (nice
10: on a busy host the server's event loop gets the CPU first), and the pool
is warmed at ``start`` so the first webhook does not pay for it.

Lifecycle: ``start()`` (or ``async with``), ``parse()`` concurrently, ``aclose()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection

from common.workflow.errors import WorkflowError, WorkflowInvalid
from common.workflow.limits import DEFAULT_LIMITS, WorkflowLimits
from common.workflow.model import Workflow
from common.workflow.parser import check_size, parse_workflow

log = logging.getLogger(__name__)

KILL_AFTER = 5.0
WORKERS = 2
WORKER_NICENESS = 10


class _Overtime(Exception):
    pass


def _alarm(_signum: int, _frame: object) -> None:
    raise _Overtime


def parse_with_deadline(text: str, filename: str,
                        limits: WorkflowLimits) -> tuple[Workflow | None, list[WorkflowError]]:
    """In a worker: the model, or the errors (returned, not raised: plain data crosses processes)."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, float(limits.parse_seconds))
    try:
        return parse_workflow(text, filename, limits), []
    except WorkflowInvalid as err:
        return None, list(err.errors)
    except _Overtime:
        return None, [_too_slow(filename, limits)]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _too_slow(filename: str, limits: WorkflowLimits) -> WorkflowError:
    return WorkflowError(filename, 1, 1, "", f"the file took longer than {limits.parse_seconds:g}s to read "
                                             f"{limits.setting('parse_seconds')}")


def _warm() -> bool:
    return True


def _worker_start(lifeline: Connection) -> None:
    # A parse must never take the CPU from the server it works for: on a busy
    # host the scheduler then runs the event loop first.
    os.nice(WORKER_NICENESS)
    # A pool's workers outlive a server that is SIGKILLed: they hold their own
    # queue's write end (and so does the fork server, through them), so no EOF
    # ever reaches them, and they keep the server's stderr and the fork server
    # alive. Only the server holds the lifeline's write end: its EOF means the
    # server is gone, whatever killed it.
    threading.Thread(target=_die_with_server, args=(lifeline,), name="lifeline", daemon=True).start()


def _die_with_server(lifeline: Connection) -> None:
    try:
        lifeline.recv()  # nothing is ever sent
    except (EOFError, OSError):
        pass
    os._exit(0)


class WorkflowParser:
    """Parses workflows in worker processes; safe to call concurrently from the loop."""

    def __init__(self, limits: WorkflowLimits = DEFAULT_LIMITS, workers: int = WORKERS) -> None:
        self.limits = limits
        self.workers = workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._closed = False
        self._lifeline: tuple[Connection, Connection] | None = None

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["common.workflow.offload"])
        if self._lifeline is None:
            self._lifeline = context.Pipe(duplex=False)  # (read end for the workers, write end kept here)
        return concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context, initializer=_worker_start,
                                                      initargs=(self._lifeline[0],))

    async def start(self) -> None:
        """Start the workers (and the fork server) now rather than on the first parse."""
        if self._pool is None:
            self._pool = self._new_pool()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._pool, _warm) for _ in range(self.workers)))

    async def parse(self, text: str, filename: str) -> Workflow:
        """The validated workflow; WorkflowInvalid for every problem, a file too big or too slow to read."""
        if self._closed:
            raise RuntimeError("the workflow parser is closed")
        check_size(len(text.encode("utf-8", errors="surrogatepass")), filename, self.limits)
        if self._pool is None:
            self._pool = self._new_pool()
        pool = self._pool
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(pool, parse_with_deadline, text, filename, self.limits)
        try:
            workflow, errors = await asyncio.wait_for(work, self.limits.parse_seconds + KILL_AFTER)
        except TimeoutError:
            self._replace(pool, "a worker did not stop at its parse deadline")
            raise WorkflowInvalid([_too_slow(filename, self.limits)]) from None
        except BrokenProcessPool:
            self._replace(pool, "a worker died")
            raise WorkflowInvalid([WorkflowError(filename, 1, 1, "", "the file could not be read: "
                                                                     "the parser's process died")]) from None
        if workflow is None:
            raise WorkflowInvalid(errors)
        return workflow

    def _replace(self, pool: concurrent.futures.ProcessPoolExecutor, why: str) -> None:
        log.warning("workflow parser: %s; starting new workers", why)
        if self._pool is pool:
            self._pool = None
        for process in list(getattr(pool, "_processes", {}).values()):  # the stuck one among them
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)
        lifeline, self._lifeline = self._lifeline, None
        if lifeline is not None:
            for end in lifeline:
                end.close()

    async def __aenter__(self) -> WorkflowParser:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
