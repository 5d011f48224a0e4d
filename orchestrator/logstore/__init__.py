"""Job logs: written durably on the node that runs the attempt, read from any node.

    store = LogStore(root)
    log = await store.open(job_id, attempt, secrets)
    durable = await log.append(batch)        # masked, fdatasync'ed, deduplicated
    async for line in log.follow(from_sequence=1): ...   # ends after log.close()

    async for page in reader.pages(job_id, attempt, from_sequence, follow): ...   # any log, any node

    store, joblog, frames   this node's files (format: frames.py, docs/runner.md)
    pages                   stored batches read back as LogPages; keepalives
    reader                  LogReader: files, the archive, or the node holding the attempt
    archive, sqlarchive     LogArchive: the shared archive (the state store's database; s3.py for chunk bytes)
    archiver                ships this node's logs to the archive
    peers                   LogPeerService: nodes reading each other's logs
    httplog                 the raw log over HTTP (tail, Range)
    retention               deleting old jobs and logs (ciadm gc)
    service, settings       NodeLogs (what a node runs of all this) and the ``logs`` settings
"""

from orchestrator.logstore.errors import LogClosed, LogCorrupt, LogGap, LogNotFound, LogStoreError
from orchestrator.logstore.joblog import JobLog
from orchestrator.logstore.store import LogStore

__all__ = ["JobLog", "LogClosed", "LogCorrupt", "LogGap", "LogNotFound", "LogStore", "LogStoreError"]
