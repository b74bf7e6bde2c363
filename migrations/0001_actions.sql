-- Every generation recorded as an action (issue 14). The whole record is kept as JSON in
-- `record`; the columns beside it are what listing and statistics filter and sort on. No image
-- bytes here: a D1 row holds at most 2 MB.
CREATE TABLE IF NOT EXISTS actions (
  id TEXT PRIMARY KEY,
  key_id TEXT NOT NULL,
  model TEXT,
  status TEXT NOT NULL,
  http_status INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  latency_ms INTEGER NOT NULL,
  cost_usd REAL,
  record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS actions_by_key ON actions (key_id, created_at DESC, id DESC);
