-- 3rd-party CAs (`/cas`). The CAs themselves are management entities (kind `cas`);
-- `ottca` enrollments name the CA whose certificate redeems them. Deleting a CA
-- deletes its enrollments; the index finds them.
ALTER TABLE enrollments ADD COLUMN ca_id TEXT;
CREATE INDEX enrollments_by_ca ON enrollments (ca_id);
