-- An identity's own config of one type for one service: in that identity's service
-- list it replaces the service's config of the type (OpenZiti's identity service
-- configs, `POST /identities/{id}/service-configs`). One per identity, service and
-- config type; deleting the identity, the service or the config removes the row.
CREATE TABLE identity_service_configs (
    identity_id TEXT NOT NULL,
    service_id TEXT NOT NULL,
    config_type_id TEXT NOT NULL,
    config_id TEXT NOT NULL,
    PRIMARY KEY (identity_id, service_id, config_type_id));
CREATE INDEX identity_service_configs_by_service ON identity_service_configs (service_id);
CREATE INDEX identity_service_configs_by_config ON identity_service_configs (config_id);
