-- Certificate extension (`/current-identity/authenticators/{id}/extend`): the new
-- certificate waits here, unverified, until the client proves it holds it
-- (`extend-verify`); an administrator's request to extend (`request-extend`) is noted
-- here too. One row per certificate authenticator at most.
CREATE TABLE cert_extensions (
    authenticator_id TEXT PRIMARY KEY,
    pending_cert_pem TEXT,
    pending_fingerprint TEXT,
    requested BIGINT NOT NULL DEFAULT 0,
    roll_keys BIGINT NOT NULL DEFAULT 0,
    requested_at TEXT);
