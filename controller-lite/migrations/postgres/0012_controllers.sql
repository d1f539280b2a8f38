-- The controllers serving this database (`GET /controllers`): each records itself
-- when it starts and refreshes `seen_at` (Unix milliseconds) while it runs; one not
-- refreshed within the presence lease is offline. `id` is kept in the controller's
-- data directory (`controller.id`).
CREATE TABLE controllers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    cert_pem TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    api_url TEXT NOT NULL,
    ctrl_address TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    last_joined_at TEXT NOT NULL,
    seen_at BIGINT NOT NULL);
