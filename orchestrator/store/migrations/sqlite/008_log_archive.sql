-- The log archive (orchestrator/logstore/sqlarchive.py): every attempt's log,
-- readable from any node, as compressed chunks keyed by sequence.
--
-- log_archives: one row per archived attempt. `lines` is the highest sequence
-- archived so far (chunks 1..lines exist, without gaps); `complete` once the
-- attempt's log has ended and all of it is here.
CREATE TABLE log_archives (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    host TEXT NOT NULL,                      -- the node that wrote the log
    lines INTEGER NOT NULL,
    stored_bytes INTEGER NOT NULL,            -- compressed, as stored
    raw_bytes INTEGER NOT NULL,               -- the pages' size uncompressed
    complete BOOLEAN NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (job_id, attempt)
);
CREATE INDEX log_archives_open_by_host ON log_archives (host) WHERE NOT complete;

-- One chunk: the lines first_sequence..last_sequence as one zstd-compressed
-- serialized LogPage: in `data`, or (logs.archive: s3) in object storage under
-- `object_key` (unique per write, so a writer that lost the race to store a
-- chunk deletes its own copy, never the winner's).
CREATE TABLE log_chunks (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    first_sequence INTEGER NOT NULL,
    last_sequence INTEGER NOT NULL,
    raw_bytes INTEGER NOT NULL,
    data BLOB,
    object_key TEXT,
    PRIMARY KEY (job_id, attempt, first_sequence)
);

-- Where each node's peer listener is (logs.peer_advertise): a node reading a
-- log that another node holds asks that node there.
CREATE TABLE log_peers (
    host TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    updated_at REAL NOT NULL
);
