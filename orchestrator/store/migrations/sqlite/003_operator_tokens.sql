-- Operator tokens (AdminService, later the dashboard's sign-in): a token is
-- solstice_<token_id>_<secret>; only the SHA-256 of the secret is kept, so the
-- database never holds a usable token. A revoked token keeps its row (token list
-- shows it); its name is free again for a new token.
CREATE TABLE operator_tokens (
    token_id TEXT PRIMARY KEY,               -- the public part of the token
    seq BIGINT NOT NULL,                     -- creation order (timestamps can tie)
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('read', 'operate', 'admin')),
    token_hash TEXT NOT NULL,                -- hex SHA-256 of the secret part
    created_at REAL NOT NULL,
    expires_at REAL,                           -- NULL = never
    revoked_at REAL                            -- NULL = live
);
CREATE UNIQUE INDEX operator_tokens_live_name ON operator_tokens (name) WHERE revoked_at IS NULL;
