-- 3rd-party CAs (`/cas`). The CAs themselves are management entities (kind `cas`);
-- `ottca` enrollments name the CA whose certificate redeems them. Deleting a CA
-- deletes its enrollments; the index finds them.
ALTER TABLE enrollments ADD COLUMN ca_id TEXT;
CREATE INDEX enrollments_by_ca ON enrollments (ca_id);

-- The 3rd-party CA whose certificate a cert authenticator holds (NULL: the network's
-- own PKI): when the CA is deleted or stops being trusted for authentication, the API
-- sessions those authenticators opened end at once.
ALTER TABLE authenticators ADD COLUMN ca_id TEXT;
CREATE INDEX authenticators_by_ca ON authenticators (ca_id);

-- API sessions a 3rd-party CA's `externalIdClaim` logged in (no authenticator): the
-- fingerprint of the certificate that proved it (routers bind edge connections to it)
-- and the CA (its deletion or distrust ends them).
ALTER TABLE api_sessions ADD COLUMN cert_fingerprint TEXT;
ALTER TABLE api_sessions ADD COLUMN ca_id TEXT;
