-- What the JUnit reports of a job attempt said (a job's `report junit="..."`):
-- read by its runner after the steps and stored by the node that ran it, with
-- the attempt's final state. Counts are columns so the dashboard can sum them;
-- the failing tests travel as a serialized jobs_pb2.TestSummary (bounded by
-- common/junit.py: at most 50 failures, names and messages cut).
CREATE TABLE test_reports (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    passed INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    summary BLOB NOT NULL,
    PRIMARY KEY (job_id, attempt)
);
