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
ALTER TABLE attempts ADD COLUMN running_at DOUBLE PRECISION;      -- the attempt reached `running`

CREATE INDEX jobs_by_commit ON jobs (forge, repo, sha);
CREATE INDEX jobs_by_pull ON jobs (forge, repo, pull_request, seq) WHERE pull_request > 0;

-- Every ref (branch, tag or pull request head) of a repository that has jobs.
CREATE TABLE dash_refs (
    forge TEXT NOT NULL,
    repo TEXT NOT NULL,
    ref TEXT NOT NULL,
    pull_request INTEGER NOT NULL,
    last_seq BIGINT NOT NULL,               -- jobs.seq of its newest job
    PRIMARY KEY (forge, repo, ref)
);
CREATE INDEX dash_refs_recent ON dash_refs (forge, repo, last_seq);

-- The commits built on each ref, in the order first built (the matrix's rows).
CREATE TABLE dash_commits (
    forge TEXT NOT NULL,
    repo TEXT NOT NULL,
    ref TEXT NOT NULL,
    sha TEXT NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
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
    n BIGINT NOT NULL,
    PRIMARY KEY (day, forge, repo, kind, bucket)
);

-- Failed and errored attempts, newest first per repository (the summary's "latest failures").
CREATE TABLE dash_failures (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    forge TEXT NOT NULL,
    repo TEXT NOT NULL,
    state INTEGER NOT NULL,
    finished_at DOUBLE PRECISION NOT NULL,
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
    line_seq BIGINT NOT NULL,               -- the line's log sequence, 0 = no line
    line TEXT NOT NULL,
    PRIMARY KEY (job_id, attempt)
);

CREATE FUNCTION dash_job_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO dash_refs (forge, repo, ref, pull_request, last_seq)
    VALUES (NEW.forge, NEW.repo, NEW.ref, NEW.pull_request, NEW.seq)
    ON CONFLICT (forge, repo, ref) DO UPDATE SET last_seq = GREATEST(dash_refs.last_seq, excluded.last_seq);
    INSERT INTO dash_commits (forge, repo, ref, sha, first_seq, last_seq, created_at)
    VALUES (NEW.forge, NEW.repo, NEW.ref, NEW.sha, NEW.seq, NEW.seq, NEW.created_at)
    ON CONFLICT (forge, repo, ref, sha) DO UPDATE SET last_seq = GREATEST(dash_commits.last_seq, excluded.last_seq);
    RETURN NULL;
END
$$;
CREATE TRIGGER dash_job_added AFTER INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION dash_job_added();

CREATE FUNCTION dash_attempt_finished() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    j_forge TEXT;
    j_repo TEXT;
    the_day INTEGER := CAST(FLOOR(NEW.finished_at / 86400) AS INTEGER);
    v_d DOUBLE PRECISION;
    v_kind INTEGER;
BEGIN
    SELECT forge, repo INTO j_forge, j_repo FROM jobs WHERE job_id = NEW.job_id;
    INSERT INTO dash_days (day, forge, repo, succeeded, failed, cancelled, errored)
    VALUES (the_day, j_forge, j_repo, CAST(NEW.state = 4 AS INTEGER), CAST(NEW.state = 5 AS INTEGER),
            CAST(NEW.state = 6 AS INTEGER), CAST(NEW.state = 7 AS INTEGER))
    ON CONFLICT (day, forge, repo) DO UPDATE SET
        succeeded = dash_days.succeeded + excluded.succeeded, failed = dash_days.failed + excluded.failed,
        cancelled = dash_days.cancelled + excluded.cancelled, errored = dash_days.errored + excluded.errored;
    IF NEW.running_at IS NOT NULL THEN
        FOR v_kind, v_d IN SELECT 0, NEW.running_at - NEW.queued_at UNION ALL SELECT 1, NEW.finished_at - NEW.running_at
        LOOP
            INSERT INTO dash_durations (day, forge, repo, kind, bucket, n)
            VALUES (the_day, j_forge, j_repo, v_kind,
                    CASE WHEN v_d < 1 THEN 0 WHEN v_d < 2 THEN 1 WHEN v_d < 5 THEN 2 WHEN v_d < 10 THEN 3 WHEN v_d < 20 THEN 4
                         WHEN v_d < 30 THEN 5 WHEN v_d < 60 THEN 6 WHEN v_d < 120 THEN 7 WHEN v_d < 300 THEN 8
                         WHEN v_d < 600 THEN 9 WHEN v_d < 1200 THEN 10 WHEN v_d < 1800 THEN 11 WHEN v_d < 3600 THEN 12
                         WHEN v_d < 7200 THEN 13 WHEN v_d < 18000 THEN 14 ELSE 15 END, 1)
            ON CONFLICT (day, forge, repo, kind, bucket) DO UPDATE SET n = dash_durations.n + 1;
        END LOOP;
    END IF;
    IF NEW.state IN (5, 7) THEN
        INSERT INTO dash_failures (job_id, attempt, forge, repo, state, finished_at)
        VALUES (NEW.job_id, NEW.attempt, j_forge, j_repo, NEW.state, NEW.finished_at)
        ON CONFLICT (job_id, attempt) DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER dash_attempt_finished AFTER UPDATE OF state ON attempts FOR EACH ROW
    WHEN (NEW.state IN (4, 5, 6, 7) AND OLD.state NOT IN (4, 5, 6, 7) AND NEW.finished_at IS NOT NULL)
    EXECUTE FUNCTION dash_attempt_finished();
