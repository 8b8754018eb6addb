-- When the supervisor loaded a revision.
ALTER TABLE policy_revisions ADD COLUMN loaded_at_ms INTEGER;
