-- The artifact archive (orchestrator/artifacts/archive.py): a job's artifacts,
-- readable from every node of a cluster (the node that stored them keeps its
-- files too). Deleted with the job's logs by retention, earlier by expire.
--
-- artifact_chunks: each file of an artifact as chunks of up to 1 MiB, in order.
CREATE TABLE artifact_chunks (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (job_id, attempt, name, path, seq)
);

-- One row per complete artifact, written after its chunks: its manifest (files,
-- sizes, sha256, modes) as JSON, and when it expires (NULL: with the logs).
CREATE TABLE artifact_manifests (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    name TEXT NOT NULL,
    manifest TEXT NOT NULL,
    expires_at REAL,
    PRIMARY KEY (job_id, attempt, name)
);
