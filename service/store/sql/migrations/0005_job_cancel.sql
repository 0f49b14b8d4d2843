-- When a job was cancelled through the API (its cancel endpoint), or NULL. A column, not a
-- job state: the state CHECK of existing databases would refuse a new state without a table
-- rebuild, and a cancelled job that PixVerse already accepted still moves through PixVerse's
-- states (its handlers just do not run).
ALTER TABLE jobs ADD COLUMN cancelled_at {real};
