-- Secrets of the built-in secret store (orchestrator/secrets/builtin.py) and the
-- audit trail of secret deliveries (orchestrator/secrets/audit.py).
--
-- A secret's value is never stored: only its seal (AES-256-GCM under the key
-- key_id of the node's keyring: nonce + ciphertext + tag), whose authenticated
-- data binds it to its scope and name.
CREATE TABLE secrets (
    scope TEXT NOT NULL,                     -- "github/acme/widgets" (a repository) or "github/acme" (an owner)
    name TEXT NOT NULL,                      -- an environment variable name
    refs TEXT NOT NULL,                      -- JSON array of ref patterns; [] = every ref
    key_id TEXT NOT NULL,                    -- the keyring key that sealed it
    sealed BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scope, name)
);

-- One row per job attempt given (or refused) secrets: names, never values.
CREATE TABLE secret_deliveries (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    repo TEXT NOT NULL,                      -- forge/owner/repo
    ref TEXT NOT NULL,
    names TEXT NOT NULL,                     -- JSON array of secret names
    outcome TEXT NOT NULL,                   -- delivered | refused
    reason TEXT NOT NULL,                    -- why it was refused
    host TEXT NOT NULL,                      -- the node that decided
    store TEXT NOT NULL,                     -- builtin | vault
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX secret_deliveries_by_job ON secret_deliveries (job_id, seq);
CREATE INDEX secret_deliveries_by_repo ON secret_deliveries (repo, seq);
