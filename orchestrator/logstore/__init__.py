"""Durable job logs with live followers (format: frames.py, docs/runner.md).

    store = LogStore(root)
    log = await store.open(job_id, attempt, secrets)
    durable = await log.append(batch)        # masked, fdatasync'ed, deduplicated
    async for line in log.follow(from_sequence=1): ...   # ends after log.close()
"""

from orchestrator.logstore.errors import LogClosed, LogCorrupt, LogGap, LogNotFound, LogStoreError
from orchestrator.logstore.joblog import JobLog
from orchestrator.logstore.store import LogStore

__all__ = ["JobLog", "LogClosed", "LogCorrupt", "LogGap", "LogNotFound", "LogStore", "LogStoreError"]
