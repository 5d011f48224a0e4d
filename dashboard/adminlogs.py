"""``LogSource`` through an orchestrator's AdminService: the job logs of a whole cluster.

A multi-host dashboard keeps no logs. The node it asks (the integration's
admin link) reads any attempt's log wherever it is kept (its own log store, a
peer node's, the shared archive: ``orchestrator.logstore.reader``) and sends
it as ``TailLogs`` pages, live with ``follow``. The pages carry the fields
of a runner batch, so they read as ``LogLine``\\ s the same way.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator, Sequence

from ciadm.client import AdminClient, AdminError, JobNotFound
from ciadm.target import Target
from common.logbatch import LogLine, iter_lines
from common.rpc import admin_pb2
from dashboard.logsource import LogError, LogMissing, LogPage


class AdminLogs:
    """``LogSource`` over ``AdminService.TailLogs`` of the orchestrator at ``target``."""

    def __init__(self, target: Target, timeout: float = 10.0) -> None:
        self.target = target
        self.timeout = timeout

    async def read(self, job_id: str, attempt: int, start: int, limit: int) -> LogPage:
        # The last ``limit`` lines (start 0) need the whole log read: TailLogs pages forward only.
        kept: deque[LogLine] = deque(maxlen=limit) if start <= 0 else deque()
        highest, closed, more = 0, False, False
        async with self._pages(job_id, attempt, max(start, 1), follow=False) as pages:
            async for page in pages:
                closed = closed or page.end
                for line in iter_lines(page):  # type: ignore[arg-type]  # LogPage has LogBatch's fields
                    if start > 0 and len(kept) >= limit:
                        more = True
                        break
                    kept.append(line)
                    highest = line.sequence
                if more:
                    break
        # Stopped early: lines follow the last one kept (the page is not the log's tail).
        return LogPage(list(kept), highest + 1 if more else highest, closed and not more)

    async def follow(self, job_id: str, attempt: int, start: int) -> AsyncIterator[Sequence[LogLine]]:
        async with self._pages(job_id, attempt, max(start, 1), follow=True) as pages:
            async for page in pages:
                lines = list(iter_lines(page))  # type: ignore[arg-type]
                if lines:
                    yield lines

    @contextlib.asynccontextmanager
    async def _pages(self, job_id: str, attempt: int, start: int,
                     follow: bool) -> AsyncIterator[AsyncIterator[admin_pb2.LogPage]]:
        """The attempt's pages; the client's errors (connecting, or while the block reads) become
        the log source's."""
        try:
            async with AdminClient(self.target, self.timeout) as admin:
                pages = admin.tail_logs(job_id, follow=follow, from_sequence=start, attempt=attempt)
                async with contextlib.aclosing(pages):
                    yield pages
        except JobNotFound:
            raise LogMissing(f"no log for job {job_id} attempt {attempt}") from None
        except AdminError as err:
            raise LogError(f"the orchestrator cannot be asked for this log right now: {err}") from None
