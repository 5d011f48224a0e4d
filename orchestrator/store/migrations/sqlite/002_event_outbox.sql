-- The durable event outbox: job events a node announced and the broker has not
-- confirmed yet. A row is written right after the state change it reports and
-- deleted once published; a node publishes its own rows on start-up and takes
-- over the rows of hosts whose heartbeat lapsed (at-least-once; consumers
-- dedupe on event_id). seq is the announce order (per-job order).
CREATE TABLE event_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    host TEXT NOT NULL,                      -- who publishes it
    job_id TEXT NOT NULL,
    event BLOB NOT NULL,                     -- serialized jobs_pb2.JobEvent
    created_at REAL NOT NULL
);
CREATE INDEX event_outbox_by_host ON event_outbox (host, seq);
