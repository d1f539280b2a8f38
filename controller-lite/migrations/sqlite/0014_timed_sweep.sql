-- The periodic sweep judges again only what time changed since the last one (API
-- sessions idle past the timeout or active since, certificates whose validity began or
-- ended, MFA answers and wake or unlock events whose posture window ran out), found
-- through these indexes instead of reading every API session.
CREATE INDEX api_sessions_by_activity ON api_sessions (last_activity);
CREATE INDEX api_session_certs_by_valid_to ON api_session_certs (valid_to);
CREATE INDEX api_session_certs_by_valid_from ON api_session_certs (valid_from);
CREATE INDEX api_sessions_by_mfa_passed ON api_sessions (mfa_passed_at);
CREATE INDEX api_sessions_by_woken ON api_sessions (woken_at);
CREATE INDEX api_sessions_by_unlocked ON api_sessions (unlocked_at);
