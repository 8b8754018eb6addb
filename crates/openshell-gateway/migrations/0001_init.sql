-- Sandboxes, their events and policy revisions, and settings.
CREATE TABLE sandboxes (
    id            TEXT PRIMARY KEY,
    workspace     TEXT NOT NULL,
    name          TEXT NOT NULL,
    phase         TEXT NOT NULL,
    spec_json     TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    exit_code     INTEGER,
    UNIQUE (workspace, name)
);

CREATE TABLE sandbox_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    sandbox_id TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    at_ms      INTEGER NOT NULL,
    message    TEXT NOT NULL
);

CREATE TABLE policy_revisions (
    sandbox_id    TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    version       INTEGER NOT NULL,
    hash          TEXT NOT NULL,
    yaml          TEXT NOT NULL,
    status        TEXT NOT NULL,
    error         TEXT,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (sandbox_id, version)
);

CREATE TABLE settings (
    scope TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
