-- Short-lived client certificates bound to one API session
-- (`/current-api-session/certificates`): an identity that logged in with a password
-- (or an external JWT) uses one to open edge connections. Routers accept such a
-- certificate for its own API session only.
CREATE TABLE api_session_certs (
    id TEXT PRIMARY KEY,
    api_session_id TEXT NOT NULL,
    identity_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE,
    cert_pem TEXT NOT NULL,
    valid_from BIGINT NOT NULL,
    valid_to BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE INDEX api_session_certs_by_session ON api_session_certs (api_session_id);

-- `updb` enrollments carry the user name the password will belong to.
ALTER TABLE enrollments ADD COLUMN username TEXT;
