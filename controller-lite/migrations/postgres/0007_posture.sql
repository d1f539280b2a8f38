-- Posture checks: what endpoints report about themselves, and the API-session part of
-- posture. OpenZiti keeps both in one controller's memory; here they are rows, so every
-- controller of a cluster judges the same data and a restart keeps it.

-- The latest posture report of each kind per identity (JSON, `posture::PostureData`).
CREATE TABLE posture_data (
    identity_id TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    updated_at BIGINT NOT NULL);

-- When the API session last answered a TOTP query, and when its endpoint last woke or
-- was unlocked (Unix seconds; 0: never): what MFA posture checks judge.
ALTER TABLE api_sessions ADD COLUMN mfa_passed_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_sessions ADD COLUMN woken_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_sessions ADD COLUMN unlocked_at BIGINT NOT NULL DEFAULT 0;

-- Session requests refused for posture, newest kept per identity
-- (`/identities/{id}/failed-service-requests`).
CREATE TABLE failed_service_requests (
    id TEXT PRIMARY KEY,
    identity_id TEXT NOT NULL,
    api_session_id TEXT NOT NULL,
    service_id TEXT NOT NULL,
    service_name TEXT NOT NULL,
    session_type TEXT NOT NULL,
    policy_failures TEXT NOT NULL,
    at BIGINT NOT NULL);
CREATE INDEX failed_service_requests_by_identity ON failed_service_requests (identity_id, at);
