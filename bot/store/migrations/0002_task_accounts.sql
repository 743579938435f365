-- Each task and training remembers the Miaohua account it was submitted with, so that
-- switching or removing a guild's account never strands work already paid for.
--
-- guild_accounts (one row per guild) becomes accounts (one row per credentials): the
-- guild's current account has retired_at NULL; a replaced or removed one keeps its
-- (encrypted) credentials until no unfinished task or training refers to it.

CREATE TABLE accounts (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: tasks keep it
    guild_id           INTEGER NOT NULL,
    email_encrypted    BLOB    NOT NULL,
    password_encrypted BLOB    NOT NULL,
    token_encrypted    BLOB,
    email_hint         TEXT    NOT NULL,
    last_login_at      REAL,
    token_ok           INTEGER NOT NULL DEFAULT 0 CHECK (token_ok IN (0, 1)),
    created_at         REAL    NOT NULL,
    updated_at         REAL    NOT NULL,
    retired_at         REAL
);

-- A new account is inserted before the previous one is retired (each one statement, no
-- transaction): should both be current for a moment, the newest one counts.
CREATE INDEX accounts_guild_idx ON accounts (guild_id, retired_at);

INSERT INTO accounts (guild_id, email_encrypted, password_encrypted, token_encrypted,
                      email_hint, last_login_at, token_ok, created_at, updated_at)
SELECT guild_id, email_encrypted, password_encrypted, token_encrypted,
       email_hint, last_login_at, token_ok, created_at, updated_at
FROM guild_accounts
ORDER BY guild_id;

DROP TABLE guild_accounts;

-- The accounts row a task was submitted with, or a training created with; NULL means the
-- guild's demo account (or, for a queued task, not submitted yet).
ALTER TABLE tasks ADD COLUMN account_id INTEGER;
ALTER TABLE trainings ADD COLUMN account_id INTEGER;

-- Work already running when this migration runs was submitted with the guild's account.
UPDATE tasks
SET account_id = (SELECT a.id FROM accounts AS a WHERE a.guild_id = tasks.guild_id)
WHERE state = 'submitted';

UPDATE trainings
SET account_id = (SELECT a.id FROM accounts AS a WHERE a.guild_id = trainings.guild_id)
WHERE state NOT IN ('done', 'failed', 'cancelled');
