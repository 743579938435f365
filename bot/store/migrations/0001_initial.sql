-- Initial schema: guild accounts and settings, generation tasks, trainings,
-- datasets, trained models and daily usage counters. Timestamps are epoch seconds.

CREATE TABLE guild_accounts (
    guild_id           INTEGER PRIMARY KEY,
    email_encrypted    BLOB    NOT NULL,
    password_encrypted BLOB    NOT NULL,
    token_encrypted    BLOB,
    email_hint         TEXT    NOT NULL,
    last_login_at      REAL,
    token_ok           INTEGER NOT NULL DEFAULT 0 CHECK (token_ok IN (0, 1)),
    created_at         REAL    NOT NULL,
    updated_at         REAL    NOT NULL
);

-- NULL generation defaults mean "use the service's generation form default".
CREATE TABLE guild_settings (
    guild_id         INTEGER PRIMARY KEY,
    model            TEXT,
    size             TEXT,
    count            INTEGER,
    scale            INTEGER,
    negative_prompt  TEXT    NOT NULL DEFAULT '',
    allowed_channels TEXT    NOT NULL DEFAULT '[]',
    blocked_words    TEXT    NOT NULL DEFAULT '[]',
    user_concurrency INTEGER,
    daily_quota      INTEGER,
    language         TEXT,
    trainer_role_id  INTEGER,
    updated_at       REAL    NOT NULL
);

CREATE TABLE tasks (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id          INTEGER NOT NULL,
    channel_id        INTEGER NOT NULL,
    user_id           INTEGER NOT NULL,
    interaction_id    INTEGER,
    status_message_id INTEGER,
    result_message_id INTEGER,
    parent_id         INTEGER REFERENCES tasks (id) ON DELETE SET NULL,
    kind              TEXT    NOT NULL CHECK (kind IN ('t2i', 'i2i')),
    model             TEXT    NOT NULL,
    prompt            TEXT    NOT NULL,
    negative_prompt   TEXT    NOT NULL DEFAULT '',
    count             INTEGER NOT NULL,
    scale             INTEGER NOT NULL,
    seed              INTEGER NOT NULL DEFAULT -1,
    size              TEXT    NOT NULL,
    init_image_url    TEXT,
    state             TEXT    NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'submitted', 'done', 'delivered', 'failed', 'cancelled')),
    service_task_id   TEXT,
    seed_used         INTEGER,
    wait_time         INTEGER,
    result_json       TEXT,
    error             TEXT,
    error_detail      TEXT,
    locale            TEXT,
    created_at        REAL    NOT NULL,
    queued_at         REAL    NOT NULL,
    submitted_at      REAL,
    done_at           REAL,
    delivered_at      REAL,
    failed_at         REAL,
    updated_at        REAL    NOT NULL,
    next_poll_at      REAL,
    poll_count        INTEGER NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX tasks_state_idx ON tasks (state);
CREATE INDEX tasks_guild_state_idx ON tasks (guild_id, state);
CREATE INDEX tasks_guild_user_idx ON tasks (guild_id, user_id);

CREATE TABLE trainings (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id            INTEGER NOT NULL,
    channel_id          INTEGER NOT NULL,
    user_id             INTEGER NOT NULL,
    name                TEXT    NOT NULL,
    description         TEXT    NOT NULL DEFAULT '',
    main_body           TEXT    NOT NULL,
    base_model          TEXT    NOT NULL,
    trigger_word        TEXT    NOT NULL,
    nsfw                INTEGER NOT NULL DEFAULT 0 CHECK (nsfw IN (0, 1)),
    state               TEXT    NOT NULL DEFAULT 'uploading'
        CHECK (state IN ('uploading', 'creating_dataset', 'submitting', 'training',
                         'done', 'failed', 'cancelled')),
    uploaded_urls       TEXT    NOT NULL DEFAULT '[]',
    pending_images      TEXT    NOT NULL DEFAULT '[]',
    dataset_ids         TEXT    NOT NULL DEFAULT '[]',
    service_task_id     TEXT,
    progress            REAL    NOT NULL DEFAULT 0,
    model_name          TEXT,
    progress_message_id INTEGER,
    error               TEXT,
    created_at          REAL    NOT NULL,
    updated_at          REAL    NOT NULL,
    finished_at         REAL,
    last_progress_at    REAL
);

CREATE INDEX trainings_state_idx ON trainings (state);
CREATE INDEX trainings_guild_idx ON trainings (guild_id);

CREATE TABLE datasets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id    INTEGER NOT NULL,
    dataset_id  TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    image_count INTEGER NOT NULL DEFAULT 0,
    created_by  INTEGER,
    created_at  REAL    NOT NULL,
    UNIQUE (guild_id, dataset_id)
);

CREATE TABLE trained_models (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id     INTEGER NOT NULL,
    model_name   TEXT    NOT NULL,
    display_name TEXT    NOT NULL,
    trigger_word TEXT    NOT NULL DEFAULT '',
    trained_by   INTEGER,
    training_id  INTEGER REFERENCES trainings (id) ON DELETE SET NULL,
    created_at   REAL    NOT NULL,
    UNIQUE (guild_id, model_name)
);

CREATE TABLE daily_usage (
    guild_id INTEGER NOT NULL,
    user_id  INTEGER NOT NULL,
    day      TEXT    NOT NULL,
    count    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (guild_id, user_id, day)
) WITHOUT ROWID;
