-- Retention: finished tasks are deleted after `storage.retention_days`. For each guild the
-- highest task id deleted so far is kept, so a button on a deleted result can say that the
-- result is too old rather than that it never existed.

CREATE TABLE pruned_tasks (
    guild_id       INTEGER PRIMARY KEY,
    pruned_through INTEGER NOT NULL
) WITHOUT ROWID;

-- The prune job looks for finished tasks by last change.
CREATE INDEX tasks_state_updated_idx ON tasks (state, updated_at);
