-- Rendering an identity asks whether it holds an API session; deleting an identity
-- removes its API sessions: both look API sessions up by identity.
CREATE INDEX api_sessions_by_identity ON api_sessions (identity_id);
