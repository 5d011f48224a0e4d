"""The tables of greenness, once for SQLite and PostgreSQL (applied at open, idempotent).

Like out-of-tree CI's, they live beside the integration store's tables in
its database; the integration store has no numbered migrations (its schema
is created at open), so neither do these.
"""

from __future__ import annotations

_SCHEMA = """
CREATE TABLE IF NOT EXISTS greenness_queues (
    queue TEXT PRIMARY KEY,
    forge TEXT NOT NULL,
    repo TEXT NOT NULL,
    ref TEXT NOT NULL,
    next_seq BIGINT NOT NULL,
    next_transition BIGINT NOT NULL,
    created_at {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS greenness_queues_repo ON greenness_queues (forge, repo);
CREATE TABLE IF NOT EXISTS greenness_commits (
    queue TEXT NOT NULL,
    sha TEXT NOT NULL,
    seq BIGINT NOT NULL,
    run_id TEXT NOT NULL,
    plan TEXT NOT NULL,
    first_seen_at {real} NOT NULL,
    PRIMARY KEY (queue, sha)
);
CREATE UNIQUE INDEX IF NOT EXISTS greenness_commits_seq ON greenness_commits (queue, seq);
CREATE TABLE IF NOT EXISTS greenness_jobs (
    queue TEXT NOT NULL,
    sha TEXT NOT NULL,
    job TEXT NOT NULL,
    required INTEGER NOT NULL,
    weight {real} NOT NULL,
    projects TEXT NOT NULL,
    run_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    carried_from TEXT NOT NULL,
    updated_at {real} NOT NULL,
    PRIMARY KEY (queue, sha, job)
);
CREATE TABLE IF NOT EXISTS greenness_verdicts (
    queue TEXT NOT NULL,
    project TEXT NOT NULL,
    sha TEXT NOT NULL,
    seq BIGINT NOT NULL,
    status TEXT NOT NULL,
    degree {real},
    reasons TEXT NOT NULL,
    carried_from TEXT NOT NULL,
    recorded_at {real} NOT NULL,
    PRIMARY KEY (queue, project, sha)
);
CREATE INDEX IF NOT EXISTS greenness_verdicts_order ON greenness_verdicts (queue, project, seq);
CREATE INDEX IF NOT EXISTS greenness_verdicts_status ON greenness_verdicts (queue, project, status, seq);
CREATE INDEX IF NOT EXISTS greenness_verdicts_pending ON greenness_verdicts (status, recorded_at);
CREATE TABLE IF NOT EXISTS greenness_scopes (
    queue TEXT NOT NULL,
    project TEXT NOT NULL,
    last_green TEXT NOT NULL,
    head TEXT NOT NULL,
    head_green INTEGER NOT NULL,
    updated_at {real} NOT NULL,
    PRIMARY KEY (queue, project)
);
CREATE TABLE IF NOT EXISTS greenness_history (
    queue TEXT NOT NULL,
    n BIGINT NOT NULL,
    project TEXT NOT NULL,
    sha TEXT NOT NULL,
    at {real} NOT NULL,
    event TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (queue, n)
);
CREATE INDEX IF NOT EXISTS greenness_history_scope ON greenness_history (queue, project, n);
CREATE TABLE IF NOT EXISTS greenness_deliveries (
    id TEXT PRIMARY KEY,
    hook TEXT NOT NULL,
    queue TEXT NOT NULL,
    n BIGINT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_at {real} NOT NULL,
    last_error TEXT NOT NULL,
    created_at {real} NOT NULL,
    delivered_at {real},
    UNIQUE (hook, queue, n)
);
CREATE INDEX IF NOT EXISTS greenness_deliveries_due ON greenness_deliveries (state, next_at);
CREATE INDEX IF NOT EXISTS greenness_deliveries_order ON greenness_deliveries (hook, queue, state, n);
"""


def schema(real: str) -> str:
    """The tables, with ``real`` as the type of the unix-time and weight columns."""
    return _SCHEMA.format(real=real)
