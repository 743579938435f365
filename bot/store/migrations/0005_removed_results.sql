-- A result a moderator deleted from the moderation log is never posted again: the task
-- remembers who removed it.
ALTER TABLE tasks ADD COLUMN removed_by INTEGER;
