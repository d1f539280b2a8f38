-- Which controller each edge router's control channel is connected to, so every
-- controller of a cluster answers `isOnline` alike. Liveness bookkeeping, not part of
-- the change log: the owning controller refreshes `seen_at` every second, and a row
-- older than the lease (a controller that died) no longer counts.
CREATE TABLE router_presence (
    router_id TEXT PRIMARY KEY,
    controller TEXT NOT NULL,
    seen_at BIGINT NOT NULL);
