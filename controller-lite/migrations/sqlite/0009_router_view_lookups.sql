-- The router-facing view is kept current from the change log: a changed service
-- re-judges the sessions on it, a changed authenticator the API sessions opened with it.
CREATE INDEX sessions_by_service ON sessions (service_id);
CREATE INDEX api_sessions_by_authenticator ON api_sessions (authenticator_id);
