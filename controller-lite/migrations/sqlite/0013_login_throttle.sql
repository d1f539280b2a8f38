-- The failed-login throttle's token buckets (`[auth] login_failures_*`), shared by every
-- controller of the database so that failures spread over controllers count once:
-- `key` is `user:SHA256(name)` or `addr:IP`; `tokens` failures left at `updated_ms`
-- (Unix milliseconds). Bookkeeping outside the change log; fully refilled rows are
-- pruned.
CREATE TABLE login_throttle (
    key TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    updated_ms BIGINT NOT NULL);
CREATE INDEX login_throttle_by_age ON login_throttle (updated_ms);
