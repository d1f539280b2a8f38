-- Weft controller store, first schema (SQLite). `IF NOT EXISTS` adopts databases made
-- before versioned migrations, whose tables are the same.
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS entities (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    tags TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (kind, id),
    UNIQUE (kind, name));

CREATE TABLE IF NOT EXISTS enrollments (
    id TEXT PRIMARY KEY,
    identity_id TEXT NOT NULL,
    method TEXT NOT NULL,
    jti TEXT NOT NULL UNIQUE,
    jwt TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used INTEGER NOT NULL,
    created_at TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS authenticators (
    id TEXT PRIMARY KEY,
    identity_id TEXT NOT NULL,
    method TEXT NOT NULL,
    fingerprint TEXT UNIQUE,
    cert_pem TEXT,
    username TEXT UNIQUE,
    password_hash TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS api_sessions (
    id TEXT PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    identity_id TEXT NOT NULL,
    authenticator_id TEXT NOT NULL,
    config_types TEXT NOT NULL,
    ip_address TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    last_activity BIGINT NOT NULL);

CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    api_session_id TEXT NOT NULL,
    identity_id TEXT NOT NULL,
    service_id TEXT NOT NULL,
    session_type TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL);

-- Counting an API session's sessions (the per-API-session cap) must not scan them all.
CREATE INDEX IF NOT EXISTS sessions_by_api_session ON sessions (api_session_id);

-- Revision counters. `changes` numbers write transactions: every write transaction
-- first increments it, which also serialises writers, so revisions commit in order.
-- `entities` is the revision of the last change to a management entity (the policy
-- cache's key).
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL);
INSERT INTO counters (name, value) VALUES ('changes', 0), ('entities', 0);

-- The change log: what each write transaction changed, in the same transaction.
-- Every controller follows it to keep its routers current; `origin` is the
-- controller process that wrote it (a follower skips its own).
CREATE TABLE changes (
    seq BIGINT NOT NULL,
    n BIGINT NOT NULL,
    kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    op TEXT NOT NULL,
    at BIGINT NOT NULL,
    origin TEXT NOT NULL,
    PRIMARY KEY (seq, n));
