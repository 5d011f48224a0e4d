-- The user:password of a clone URL submitted through AdminService, kept apart from
-- the job record (which stores the URL without it) for as long as the job is
-- unfinished: the node that runs the job hands it to the runner, and the sweep
-- deletes it once the job's current attempt is final.
CREATE TABLE clone_credentials (
    job_id TEXT PRIMARY KEY,
    userinfo TEXT NOT NULL,                  -- as it stood in the URL (percent-encoded)
    created_at REAL NOT NULL
);
