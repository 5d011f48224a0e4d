"""The tables of out-of-tree CI, once for SQLite and PostgreSQL (applied at open, idempotent)."""

from __future__ import annotations

_SCHEMA = """
CREATE TABLE IF NOT EXISTS external_allowlist (
    source TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    digest TEXT NOT NULL,
    loaded_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS external_dispatches (
    id TEXT PRIMARY KEY,
    delivery TEXT NOT NULL,
    downstream TEXT NOT NULL,
    upstream TEXT NOT NULL,
    installation_id BIGINT NOT NULL,
    sha TEXT NOT NULL,
    ref TEXT NOT NULL,
    pr_number BIGINT NOT NULL,
    event TEXT NOT NULL,
    action TEXT NOT NULL,
    level INTEGER NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_at {real} NOT NULL,
    last_error TEXT NOT NULL,
    created_at {real} NOT NULL,
    sent_at {real},
    finished_at {real},
    expires_at {real} NOT NULL,
    UNIQUE (delivery, downstream)
);
CREATE INDEX IF NOT EXISTS external_dispatches_due ON external_dispatches (state, next_at);
CREATE INDEX IF NOT EXISTS external_dispatches_commit ON external_dispatches (upstream, sha);
CREATE INDEX IF NOT EXISTS external_dispatches_expiry ON external_dispatches (expires_at);
CREATE TABLE IF NOT EXISTS external_health (
    downstream TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    unhealthy_since {real},
    last_error TEXT NOT NULL,
    last_success_at {real},
    last_failure_at {real}
);
CREATE TABLE IF NOT EXISTS external_rate (
    repo TEXT PRIMARY KEY,
    tokens {real} NOT NULL,
    updated_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS external_results (
    downstream TEXT NOT NULL,
    delivery TEXT NOT NULL,
    run_id TEXT NOT NULL,
    run_attempt INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    trusted TEXT NOT NULL,
    upstream TEXT NOT NULL,
    sha TEXT NOT NULL,
    pr_number BIGINT NOT NULL,
    status TEXT NOT NULL,
    conclusion TEXT NOT NULL,
    first_seen_at {real} NOT NULL,
    completed_seen_at {real},
    updated_at {real} NOT NULL,
    expires_at {real} NOT NULL,
    untrusted TEXT NOT NULL,
    PRIMARY KEY (downstream, delivery, run_id, run_attempt, job_id)
);
CREATE INDEX IF NOT EXISTS external_results_commit ON external_results (upstream, sha);
CREATE INDEX IF NOT EXISTS external_results_pull ON external_results (upstream, pr_number);
CREATE INDEX IF NOT EXISTS external_results_downstream ON external_results (downstream, updated_at);
CREATE INDEX IF NOT EXISTS external_results_expiry ON external_results (expires_at);
CREATE TABLE IF NOT EXISTS external_upstream_checks (
    key TEXT PRIMARY KEY,
    upstream TEXT NOT NULL,
    sha TEXT NOT NULL,
    installation_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    external_id TEXT NOT NULL,
    shown_rank INTEGER NOT NULL,
    wanted_rank INTEGER NOT NULL,
    wanted TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_at {real} NOT NULL,
    last_error TEXT NOT NULL,
    expires_at {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS external_upstream_checks_due ON external_upstream_checks (next_at);
"""


def schema(real: str) -> str:
    """The tables, with ``real`` as the type of the unix-time columns."""
    return _SCHEMA.format(real=real)
