-- Solstice CI state store, SQLite dialect. Times are epoch seconds (REAL).
-- States are jobs_pb2.JobState / StepState numbers. Append new files; never edit a released one.

-- A job: what to run. Its state lives in its attempts; jobs.attempt names the current one.
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- submission order (newest-first listings)
    job_id TEXT NOT NULL UNIQUE,
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    runs_on TEXT NOT NULL,
    repo TEXT NOT NULL,
    ref TEXT NOT NULL,
    sha TEXT NOT NULL,
    attempt INTEGER NOT NULL,                -- the current attempt, from 1
    created_at REAL NOT NULL,
    request BLOB NOT NULL                    -- serialized jobs_pb2.JobRequest
);
CREATE INDEX jobs_by_run ON jobs (run_id, seq);
CREATE INDEX jobs_by_repo ON jobs (repo, ref, seq);

-- One run of a job. Only the current attempt can be unfinished, so a state change
-- of an unfinished attempt needs no look at jobs.attempt: one conditional UPDATE.
CREATE TABLE attempts (
    job_id TEXT NOT NULL REFERENCES jobs (job_id),
    attempt INTEGER NOT NULL,
    host TEXT NOT NULL DEFAULT '',
    state INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    vm_name TEXT NOT NULL DEFAULT '',
    queued_at REAL NOT NULL,
    started_at REAL,                         -- claimed by a host
    finished_at REAL,                        -- reached a terminal state
    updated_at REAL NOT NULL,
    PRIMARY KEY (job_id, attempt)
);
CREATE UNIQUE INDEX attempts_one_unfinished ON attempts (job_id) WHERE state IN (1, 2, 3);
CREATE INDEX attempts_by_host ON attempts (host, state);
CREATE INDEX attempts_by_state ON attempts (state);

CREATE TABLE steps (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    state INTEGER NOT NULL,
    exit_code INTEGER NOT NULL,
    duration REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (job_id, attempt, idx),
    FOREIGN KEY (job_id, attempt) REFERENCES attempts (job_id, attempt)
);

CREATE TABLE hosts (
    name TEXT PRIMARY KEY,
    labels TEXT NOT NULL,                    -- JSON array of strings
    capacity INTEGER NOT NULL,
    running INTEGER NOT NULL,
    last_heartbeat REAL NOT NULL,
    draining INTEGER NOT NULL DEFAULT 0,
    registered_at REAL NOT NULL
);

CREATE TABLE ignored_transitions (
    reason TEXT PRIMARY KEY,                 -- states.IgnoreReason value
    n INTEGER NOT NULL
);
