-- The durable event outbox: job events a node announced and the broker has not
-- confirmed yet. A row is written with the state change it reports (a final
-- transition writes both in one transaction) or right after it, and
-- deleted once published; a node publishes its own rows on start-up and takes
-- over the rows of hosts whose heartbeat lapsed (at-least-once; consumers
-- dedupe on event_id). seq is the announce order (per-job order).
CREATE TABLE event_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    host TEXT NOT NULL,                      -- who publishes it
    job_id TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,           -- what a confirmed publish deletes by
    event BLOB NOT NULL,                     -- serialized jobs_pb2.JobEvent
    created_at REAL NOT NULL
);
CREATE INDEX event_outbox_by_host ON event_outbox (host, seq);
