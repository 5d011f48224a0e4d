-- The dashboard's read model (dashboard/, docs/dashboard.md): what its pages need to
-- answer in a few index lookups however many jobs are stored.
--
-- jobs gain the forge and the pull request of their checkout (written by every
-- submit; rows stored before are filled in by this migration's data step,
-- orchestrator/store/dashsql.py), attempts the time they started running.
-- The dash_* tables are kept up to date by the triggers below, in the same
-- statement as the write they follow (every writer: submits, transitions,
-- cancels, lapsed-host requeues), so no page ever scans the jobs.
ALTER TABLE jobs ADD COLUMN forge TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN pull_request INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN running_at REAL;      -- the attempt reached `running`

CREATE INDEX jobs_by_commit ON jobs (forge, repo, sha);
CREATE INDEX jobs_by_pull ON jobs (forge, repo, pull_request, seq) WHERE pull_request > 0;

-- Every ref (branch, tag or pull request head) of a repository that has jobs.
CREATE TABLE dash_refs (
    forge TEXT NOT NULL,
    repo TEXT NOT NULL,
    ref TEXT NOT NULL,
    pull_request INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,               -- jobs.seq of its newest job
    PRIMARY KEY (forge, repo, ref)
);
CREATE INDEX dash_refs_recent ON dash_refs (forge, repo, last_seq);

-- The commits built on each ref, in the order first built (the matrix's rows).
CREATE TABLE dash_commits (
    forge TEXT NOT NULL,
    repo TEXT NOT NULL,
    ref TEXT NOT NULL,
    sha TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (forge, repo, ref, sha)
);
CREATE INDEX dash_commits_recent ON dash_commits (forge, repo, ref, first_seq);

-- Finished attempts per repository and UTC day (day = floor(finished_at / 86400)).
CREATE TABLE dash_days (
    day INTEGER NOT NULL,
    forge TEXT NOT NULL,
    repo TEXT NOT NULL,
    succeeded INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    cancelled INTEGER NOT NULL,
    errored INTEGER NOT NULL,
    PRIMARY KEY (day, forge, repo)
);

-- Histograms of queue time (kind 0: queued -> running) and run time (kind 1:
-- running -> finished) per repository and day; bucket i counts durations below
-- the i-th edge of dashsql.DURATION_EDGES (the last bucket: the rest).
CREATE TABLE dash_durations (
    day INTEGER NOT NULL,
    forge TEXT NOT NULL,
    repo TEXT NOT NULL,
    kind INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (day, forge, repo, kind, bucket)
);

-- Failed and errored attempts, newest first per repository (the summary's "latest failures").
CREATE TABLE dash_failures (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    forge TEXT NOT NULL,
    repo TEXT NOT NULL,
    state INTEGER NOT NULL,
    finished_at REAL NOT NULL,
    PRIMARY KEY (job_id, attempt)
);
CREATE INDEX dash_failures_recent ON dash_failures (forge, repo, finished_at);

-- Where a failed attempt went wrong: its failing step and that step's first line
-- that reads like an error (else its last line), as stored (masked). Written by
-- the node that ran the attempt once its log is closed.
CREATE TABLE failure_notes (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    step INTEGER NOT NULL,                   -- step index, -1 = before any step
    step_name TEXT NOT NULL,
    line_seq INTEGER NOT NULL,               -- the line's log sequence, 0 = no line
    line TEXT NOT NULL,
    PRIMARY KEY (job_id, attempt)
);

CREATE TRIGGER dash_job_added AFTER INSERT ON jobs
BEGIN
    INSERT INTO dash_refs (forge, repo, ref, pull_request, last_seq)
    VALUES (NEW.forge, NEW.repo, NEW.ref, NEW.pull_request, NEW.seq)
    ON CONFLICT (forge, repo, ref) DO UPDATE SET last_seq = excluded.last_seq;
    INSERT INTO dash_commits (forge, repo, ref, sha, first_seq, last_seq, created_at)
    VALUES (NEW.forge, NEW.repo, NEW.ref, NEW.sha, NEW.seq, NEW.seq, NEW.created_at)
    ON CONFLICT (forge, repo, ref, sha) DO UPDATE SET last_seq = excluded.last_seq;
END;

CREATE TRIGGER dash_attempt_finished AFTER UPDATE OF state ON attempts
WHEN NEW.state IN (4, 5, 6, 7) AND OLD.state NOT IN (4, 5, 6, 7) AND NEW.finished_at IS NOT NULL
BEGIN
    INSERT INTO dash_days (day, forge, repo, succeeded, failed, cancelled, errored)
    SELECT CAST(NEW.finished_at / 86400 AS INTEGER), j.forge, j.repo,
           NEW.state = 4, NEW.state = 5, NEW.state = 6, NEW.state = 7
    FROM jobs j WHERE j.job_id = NEW.job_id
    ON CONFLICT (day, forge, repo) DO UPDATE SET
        succeeded = dash_days.succeeded + excluded.succeeded, failed = dash_days.failed + excluded.failed,
        cancelled = dash_days.cancelled + excluded.cancelled, errored = dash_days.errored + excluded.errored;
    INSERT INTO dash_durations (day, forge, repo, kind, bucket, n)
    SELECT day, forge, repo, kind,
           CASE WHEN d < 1 THEN 0 WHEN d < 2 THEN 1 WHEN d < 5 THEN 2 WHEN d < 10 THEN 3 WHEN d < 20 THEN 4
                WHEN d < 30 THEN 5 WHEN d < 60 THEN 6 WHEN d < 120 THEN 7 WHEN d < 300 THEN 8 WHEN d < 600 THEN 9
                WHEN d < 1200 THEN 10 WHEN d < 1800 THEN 11 WHEN d < 3600 THEN 12 WHEN d < 7200 THEN 13
                WHEN d < 18000 THEN 14 ELSE 15 END, 1
    FROM (SELECT CAST(NEW.finished_at / 86400 AS INTEGER) AS day, j.forge AS forge, j.repo AS repo, 0 AS kind,
                 NEW.running_at - NEW.queued_at AS d
          FROM jobs j WHERE j.job_id = NEW.job_id AND NEW.running_at IS NOT NULL
          UNION ALL
          SELECT CAST(NEW.finished_at / 86400 AS INTEGER), j.forge, j.repo, 1, NEW.finished_at - NEW.running_at
          FROM jobs j WHERE j.job_id = NEW.job_id AND NEW.running_at IS NOT NULL) AS x
    WHERE true
    ON CONFLICT (day, forge, repo, kind, bucket) DO UPDATE SET n = dash_durations.n + 1;
    INSERT INTO dash_failures (job_id, attempt, forge, repo, state, finished_at)
    SELECT NEW.job_id, NEW.attempt, j.forge, j.repo, NEW.state, NEW.finished_at
    FROM jobs j WHERE j.job_id = NEW.job_id AND NEW.state IN (5, 7)
    ON CONFLICT (job_id, attempt) DO NOTHING;
END;
