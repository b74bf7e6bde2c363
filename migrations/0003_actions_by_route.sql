-- Routes (issue 14): the route an action was made through, and what a route's statistics add up
-- (cache status, images delivered), as columns beside the record so that SQL can filter and
-- aggregate without reading it.
ALTER TABLE actions ADD COLUMN route_id TEXT;
ALTER TABLE actions ADD COLUMN cache TEXT;
ALTER TABLE actions ADD COLUMN images INTEGER;
CREATE INDEX IF NOT EXISTS actions_by_route ON actions (key_id, route_id, created_at DESC, id DESC);
