-- Retention deletes the oldest actions across all keys: an index on creation time alone.
CREATE INDEX IF NOT EXISTS actions_by_time ON actions (created_at);
