-- The outbox also holds job requests: a new attempt that a requeue or a retry queues is
-- written with its request in the same transaction, so a stored queued attempt always
-- reaches the queue (a publish that failed is retried from here, never forgotten).
-- kind: 0 a JobEvent (the "event" column), 1 a JobRequest ("event" then holds the request,
-- "event_id" a message id of its own); priority: the request's queue priority.
ALTER TABLE event_outbox ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;
ALTER TABLE event_outbox ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
