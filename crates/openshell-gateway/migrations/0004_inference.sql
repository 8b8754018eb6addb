-- The route behind inference.local, per workspace: "" for agents,
-- "sandbox-system" for the sandbox's own components.
CREATE TABLE inference_routes (
    workspace       TEXT NOT NULL,
    name            TEXT NOT NULL,
    provider_id     TEXT NOT NULL REFERENCES providers (id),
    model           TEXT NOT NULL,
    timeout_seconds INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    validated_json  TEXT NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (workspace, name)
);
