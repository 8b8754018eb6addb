-- Workspaces and who may use them. Every workspace a sandbox, provider or
-- route already names becomes a workspace; `default` always exists.
CREATE TABLE workspaces (
    name          TEXT PRIMARY KEY,
    labels_json   TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE workspace_members (
    workspace     TEXT NOT NULL REFERENCES workspaces (name) ON DELETE CASCADE,
    subject       TEXT NOT NULL,
    role          TEXT NOT NULL,
    added_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (workspace, subject)
);

INSERT INTO workspaces (name, labels_json, created_at_ms)
    VALUES ('default', '[]', CAST(strftime('%s', 'now') AS INTEGER) * 1000);
INSERT OR IGNORE INTO workspaces (name, labels_json, created_at_ms)
    SELECT DISTINCT workspace, '[]', CAST(strftime('%s', 'now') AS INTEGER) * 1000 FROM (
        SELECT workspace FROM sandboxes
        UNION SELECT workspace FROM providers
        UNION SELECT workspace FROM inference_routes
    );

-- Each change of a settings scope (a sandbox's, or global) moves its
-- revision on by one.
CREATE TABLE settings_revisions (
    scope    TEXT PRIMARY KEY,
    revision INTEGER NOT NULL
);
