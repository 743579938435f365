-- A member's limit splits in two: tasks at the service at once (`user_running`, what
-- `user_concurrency` held) and tasks waiting in the guild's queue (`user_queued`, 0004).
ALTER TABLE guild_settings RENAME COLUMN user_concurrency TO user_running;
