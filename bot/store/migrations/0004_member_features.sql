-- Remixes, server styles, delivery by direct message, member preferences, a queue per
-- member and a moderation log channel.

-- How a task with a parent came about: 'rerun' (same values, from a button or reaction)
-- or 'remix' (values edited in the remix form). NULL for a task from a command.
ALTER TABLE tasks ADD COLUMN origin TEXT CHECK (origin IN ('rerun', 'remix'));
UPDATE tasks SET origin = 'rerun' WHERE parent_id IS NOT NULL;

-- The server style a task was made with (its name then), or NULL. `prompt` and
-- `negative_prompt` hold what was sent to the service, the style already applied;
-- `member_prompt` holds the member's own words when a style wrapped them.
ALTER TABLE tasks ADD COLUMN style TEXT;
ALTER TABLE tasks ADD COLUMN member_prompt TEXT;

-- Where the result goes: the task's channel, or the requester's direct messages.
ALTER TABLE tasks ADD COLUMN delivery TEXT NOT NULL DEFAULT 'channel'
    CHECK (delivery IN ('channel', 'dm'));

-- A member's history is read newest first.
CREATE INDEX tasks_guild_user_id_idx ON tasks (guild_id, user_id, id);

-- Waiting tasks a member may have in the guild's queue (NULL: the bot-wide default), and
-- the channel moderation entries go to (NULL: none).
ALTER TABLE guild_settings ADD COLUMN user_queued INTEGER;
ALTER TABLE guild_settings ADD COLUMN log_channel_id INTEGER;

-- A member's own defaults in one guild; NULL means "not chosen".
CREATE TABLE member_preferences (
    guild_id        INTEGER NOT NULL,
    user_id         INTEGER NOT NULL,
    model           TEXT,
    size            TEXT,
    count           INTEGER,
    negative_prompt TEXT,
    delivery        TEXT CHECK (delivery IN ('channel', 'dm')),
    updated_at      REAL    NOT NULL,
    PRIMARY KEY (guild_id, user_id)
) WITHOUT ROWID;

-- A guild's named prompt templates; `prompt` contains {prompt} where the member's prompt
-- goes. Names are unique per guild regardless of case (`name_key` is the casefolded name).
CREATE TABLE styles (
    guild_id        INTEGER NOT NULL,
    name_key        TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    prompt          TEXT    NOT NULL,
    negative_prompt TEXT    NOT NULL DEFAULT '',
    model           TEXT,
    size            TEXT,
    created_by      INTEGER,
    created_at      REAL    NOT NULL,
    PRIMARY KEY (guild_id, name_key)
) WITHOUT ROWID;
