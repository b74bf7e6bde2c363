-- Managed keys (issue 16): one row per key, named by the hex SHA-256 of the key (never the key).
-- The whole record is JSON in `record`; `disabled` and `created_at` are what listing filters and
-- orders on. The exact counters (rate, in flight, spend) live in a Durable Object per key.
CREATE TABLE IF NOT EXISTS keys (
  hash TEXT PRIMARY KEY,
  disabled INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS keys_by_creation ON keys (created_at, hash);
