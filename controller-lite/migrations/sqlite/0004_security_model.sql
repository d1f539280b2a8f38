-- Security model, first part: authentication policies (lockouts), TOTP MFA and the
-- authentication queries of API sessions.

-- `mfa_required`: the identity had a verified MFA enrollment when it logged in;
-- `mfa_complete`: the session answered its TOTP query. An API session with an open
-- query is partial: it reaches only the endpoints that answer the query.
ALTER TABLE api_sessions ADD COLUMN mfa_required BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_sessions ADD COLUMN mfa_complete BIGINT NOT NULL DEFAULT 0;

-- Failed passwords in a row, counted in the database so that every controller of a
-- cluster counts the same attempts toward a policy's lockout.
ALTER TABLE authenticators ADD COLUMN failed_attempts BIGINT NOT NULL DEFAULT 0;

-- One TOTP enrollment per identity. `last_step` is the last TOTP time step accepted
-- (a code is good once); `failures`/`blocked_until` rate-limit wrong codes.
CREATE TABLE mfa (
    id TEXT PRIMARY KEY,
    identity_id TEXT NOT NULL UNIQUE,
    secret TEXT NOT NULL,
    verified BIGINT NOT NULL,
    recovery_codes TEXT NOT NULL,
    last_step BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL);
