-- Providers (credentials sealed by the gateway's key, never in the clear)
-- and which sandboxes they are attached to.
CREATE TABLE providers (
    id                  TEXT PRIMARY KEY,
    workspace           TEXT NOT NULL,
    name                TEXT NOT NULL,
    type                TEXT NOT NULL,
    credential_keys     TEXT NOT NULL,
    credentials_sealed  TEXT NOT NULL,
    config_json         TEXT NOT NULL,
    labels_json         TEXT NOT NULL,
    resource_version    INTEGER NOT NULL,
    credential_revision INTEGER NOT NULL,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    UNIQUE (workspace, name)
);

CREATE TABLE sandbox_providers (
    sandbox_id  TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    provider_id TEXT NOT NULL REFERENCES providers (id),
    attached_at_ms INTEGER NOT NULL,
    PRIMARY KEY (sandbox_id, provider_id)
);

ALTER TABLE sandboxes ADD COLUMN resource_version INTEGER NOT NULL DEFAULT 1;
