"""Tests of the store on both backends: migrations, every repository, guarded transitions.

Tests that take the `store` or `new_database` fixture run on SQLite and on PostgreSQL;
those about SQLite itself (pragmas, the file on disk) open a file under `tmp_path`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest

from bot.crypto import SecretBox, mask_email
from bot.store import (
    ConstraintViolation,
    Migration,
    MigrationError,
    RunningWork,
    Store,
    TaskState,
    TrainingState,
    base,
    load_migrations,
    migrate,
    schema_version,
)
from bot.store.database import Database, Row
from bot.store.sqlite import SqliteDatabase
from bot.store.store import open_database
from tests.conftest import DatabaseFactory


class FakeClock:
    """A clock that advances one second per reading."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


pytestmark = pytest.mark.backends()


@pytest.fixture
async def store(new_database: DatabaseFactory) -> AsyncIterator[Store]:
    s = await Store.open(await new_database(), clock=FakeClock())
    yield s
    await s.close()


_SQLITE_SCHEMA = (
    "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
)
_POSTGRESQL_SCHEMA = """
SELECT 'column', table_name || '.' || column_name,
       concat_ws(' ', data_type, is_nullable, column_default)
FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'constraint', conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
ORDER BY 1, 2
"""


async def _schema(db: Database) -> tuple[int, list[tuple[str, str, str]]]:
    sql = _SQLITE_SCHEMA if db.dialect == "sqlite" else _POSTGRESQL_SCHEMA
    return await schema_version(db), [tuple(r) for r in await db.fetch_all(sql)]


async def _tables(db: Database) -> set[str]:
    sql = (
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        if db.dialect == "sqlite"
        else "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    )
    return {row[0] for row in await db.fetch_all(sql)}


def _task_params(**overrides: object) -> dict[str, object]:
    params: dict[str, object] = {
        "guild_id": 10,
        "channel_id": 20,
        "user_id": 30,
        "kind": "t2i",
        "model": "Artist_V0.1.3",
        "prompt": "one girl, beautiful",
        "count": 2,
        "scale": 7,
        "size": "512x512",
    }
    params.update(overrides)
    return params


# --- migrations and connection -------------------------------------------------------------


def test_migration_files_are_numbered_from_one() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "initial"
    assert "CREATE TABLE tasks" in migrations[0].sql


async def test_open_from_empty_creates_parent_dir_and_latest_schema(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "bot.db"
    store = await Store.open(path)
    try:
        assert path.exists()
        version, objects = await _schema(store.db)
        assert version == len(load_migrations())
        names = {name for kind, name, _ in objects if kind == "table"}
        assert {"accounts", "guild_settings", "tasks", "trainings"} <= names
        assert {"datasets", "trained_models", "daily_usage"} <= names
    finally:
        await store.close()


async def test_open_from_empty_database_creates_latest_schema(
    new_database: DatabaseFactory,
) -> None:
    async with await Store.open(await new_database()) as store:
        assert await schema_version(store.db) == len(load_migrations())
        assert {"accounts", "guild_settings", "tasks", "trainings", "datasets"} <= await _tables(
            store.db
        )
        assert {"trained_models", "daily_usage", "styles", "member_preferences"} <= await _tables(
            store.db
        )


@pytest.mark.parametrize("applied", range(len(load_migrations()) + 1))
async def test_upgrade_from_every_earlier_version_matches_fresh_schema(
    new_database: DatabaseFactory, applied: int
) -> None:
    fresh = await Store.open(await new_database())
    expected = await _schema(fresh.db)
    await fresh.close()

    target = await new_database()
    db = await open_database(target)
    try:
        assert await migrate(db, target=applied) == applied
        assert await schema_version(db) == applied
    finally:
        await db.close()
    upgraded = await Store.open(target)
    try:
        assert await _schema(upgraded.db) == expected
    finally:
        await upgraded.close()


async def test_reopen_keeps_data_and_does_not_reapply(new_database: DatabaseFactory) -> None:
    target = await new_database()
    async with await Store.open(target) as store:
        task = await store.tasks.create(**_task_params())
    async with await Store.open(target) as store:
        assert (await store.tasks.get(task.id)) == task
        assert await schema_version(store.db) == len(load_migrations())


async def test_failed_migration_rolls_back_whole_file(new_database: DatabaseFactory) -> None:
    migrations = [
        Migration(1, "one", "CREATE TABLE a (x INTEGER);"),
        Migration(2, "two", "CREATE TABLE b (x INTEGER);\nINSERT INTO nowhere VALUES (1);"),
    ]
    db = await open_database(await new_database())
    try:
        with pytest.raises((sqlite3.OperationalError, asyncpg.UndefinedTableError)):
            await migrate(db, migrations)
        assert await schema_version(db) == 1
        assert await _tables(db) - {"mh_schema"} == {"a"}
    finally:
        await db.close()


async def test_database_newer_than_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        await conn.execute("PRAGMA user_version = 999")
    with pytest.raises(MigrationError):
        await Store.open(path)


async def test_pragmas_wal_foreign_keys_busy_timeout(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "bot.db", busy_timeout_ms=1234) as store:

        async def pragma(name: str) -> object:
            rows = await store.db.fetch_all(f"PRAGMA {name}")
            return next(iter(rows))[0]

        assert await pragma("journal_mode") == "wal"
        assert await pragma("foreign_keys") == 1
        # Waits for a locked file are the loop's own (tests/test_store_direct.py), and the
        # write-ahead log is checkpointed off the loop: SQLite does neither itself.
        assert await pragma("busy_timeout") == 0
        assert await pragma("wal_autocheckpoint") == 0
        assert isinstance(store.db, SqliteDatabase) and store.db.busy_timeout_ms == 1234
    assert (tmp_path / "bot.db").exists()


async def test_memory_database_is_allowed() -> None:
    async with await Store.open(":memory:") as store:
        task = await store.tasks.create(**_task_params())
        assert task.id == 1


# --- accounts ------------------------------------------------------------------------------


async def test_account_round_trip_token_and_retire(store: Store) -> None:
    assert await store.accounts.get(1) is None
    created = await store.accounts.replace(
        guild_id=1, email_encrypted=b"E1", password_encrypted=b"P1", email_hint="d***@x.io"
    )
    assert (created.token_encrypted, created.token_ok, created.last_login_at) == (None, False, None)
    assert created.current and await store.accounts.get(1) == created

    with_token = await store.accounts.set_token(created.id, b"T1", 123.0)
    assert with_token is not None
    assert (with_token.token_encrypted, with_token.token_ok, with_token.last_login_at) == (
        b"T1",
        True,
        123.0,
    )

    replaced = await store.accounts.replace(
        guild_id=1,
        email_encrypted=b"E2",
        password_encrypted=b"P2",
        email_hint="e***@x.io",
        token_encrypted=b"T2",
        last_login_at=5.0,
        token_ok=True,
    )
    assert replaced.id > created.id
    assert (replaced.email_encrypted, replaced.token_encrypted) == (b"E2", b"T2")
    assert "E2" not in repr(replaced)
    assert await store.accounts.get(1) == replaced
    old = await store.accounts.get_by_id(created.id)  # kept, retired, for its running work
    assert old is not None and not old.current and old.password_encrypted == b"P1"

    assert await store.accounts.set_token(999, b"T", 1.0) is None
    assert await store.accounts.retire(1) == replaced.id
    assert await store.accounts.retire(1) is None
    assert await store.accounts.get(1) is None
    assert await store.accounts.retired_ids() == [created.id, replaced.id]


async def _account(store: Store, guild_id: int, hint: str = "a***@x.io") -> int:
    row = await store.accounts.replace(
        guild_id=guild_id, email_encrypted=b"E", password_encrypted=b"P", email_hint=hint
    )
    return row.id


async def test_retired_accounts_are_kept_until_their_running_work_ends(store: Store) -> None:
    first = await _account(store, 1)
    task = await store.tasks.create(**_task_params(guild_id=1))
    submitted = await store.tasks.mark_submitted(task.id, "svc-1", first)
    assert submitted is not None and submitted.account_id == first
    training = await store.trainings.create(
        guild_id=1, channel_id=2, user_id=3, name="m", main_body="person", base_model="",
        trigger_word="", account_id=first,
    )  # fmt: skip
    queued = await store.tasks.create(**_task_params(guild_id=1))  # takes no account yet
    second = await _account(store, 1)

    assert await store.accounts.running_work(1, first) == RunningWork(tasks=1, trainings=1)
    assert await store.accounts.running_work(1, second) == RunningWork()
    assert not await store.accounts.running_work(2, first)
    assert await store.accounts.prune() == []

    await store.tasks.mark_done(task.id, [], 1)
    assert await store.accounts.prune() == []  # the training still runs on it
    await store.trainings.set_state(training.id, TrainingState.FAILED, [TrainingState.UPLOADING])
    assert await store.accounts.prune(keep={first}) == []  # held by a submission in flight
    assert await store.accounts.prune() == [first]
    assert await store.accounts.get_by_id(first) is None
    assert (await store.tasks.get(task.id)).account_id == first  # ids are never reused
    assert (await store.tasks.get(queued.id)).account_id is None
    assert await store.accounts.get_by_id(second) is not None  # the current one stays


async def test_requeue_forgets_the_account(store: Store) -> None:
    account = await _account(store, 1)
    task = await store.tasks.create(**_task_params(guild_id=1))
    await store.tasks.mark_submitted(task.id, "svc-1", account)
    requeued = await store.tasks.requeue(task.id)
    assert requeued is not None and requeued.account_id is None


async def test_upgrade_to_0006_keeps_a_guilds_limit_as_its_running_limit(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        await migrate(SqliteDatabase(conn), target=5)
        await conn.execute(
            "INSERT INTO guild_settings (guild_id, user_concurrency, updated_at) VALUES (7, 3, 1)"
        )
    async with await Store.open(path) as store:
        settings = await store.settings.get(7)
        assert (settings.user_running, settings.user_queued) == (3, None)


async def test_upgrade_from_0001_keeps_accounts_and_binds_running_work(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        await migrate(SqliteDatabase(conn), target=1)
        await conn.execute(
            "INSERT INTO guild_accounts (guild_id, email_encrypted, password_encrypted,"
            " token_encrypted, email_hint, last_login_at, token_ok, created_at, updated_at)"
            " VALUES (7, x'45', x'50', x'54', 'a***@x.io', 5.0, 1, 1.0, 2.0)"
        )
        task_sql = (
            "INSERT INTO tasks (guild_id, channel_id, user_id, kind, model, prompt, count, scale,"
            " size, state, created_at, queued_at, updated_at)"
            " VALUES (?, 1, 1, 't2i', 'm', 'p', 1, 7, '512x512', ?, 1, 1, 1)"
        )
        for guild_id, state in [
            (7, "submitted"),
            (7, "queued"),
            (7, "delivered"),
            (8, "submitted"),
        ]:
            await conn.execute(task_sql, (guild_id, state))
        training_sql = (
            "INSERT INTO trainings (guild_id, channel_id, user_id, name, main_body, base_model,"
            " trigger_word, state, created_at, updated_at)"
            " VALUES (?, 1, 1, ?, 'p', '', '', ?, 1, 1)"
        )
        await conn.execute(training_sql, (7, "running", "training"))
        await conn.execute(training_sql, (7, "old", "done"))
    async with await Store.open(path) as store:
        account = await store.accounts.get(7)
        assert account is not None and account.current
        assert (account.email_encrypted, account.password_encrypted) == (b"E", b"P")
        assert (account.token_encrypted, account.token_ok, account.last_login_at) == (
            b"T",
            True,
            5.0,
        )
        tasks = [await store.tasks.get(i) for i in (1, 2, 3, 4)]
        # Only the task running at the service is bound to the guild's account; a guild
        # without one (8) ran on its demo account.
        assert [t.account_id for t in tasks] == [account.id, None, None, None]
        trainings = [await store.trainings.get(i) for i in (1, 2)]
        assert [t.account_id for t in trainings] == [account.id, None]
        assert await store.accounts.running_work(7, account.id) == RunningWork(1, 1)
        replaced = await _account(store, 7)
        assert (await store.accounts.get(7)).id == replaced
        assert await store.accounts.prune() == []  # the migrated running work still needs it


async def test_accounts_store_only_ciphertext(tmp_path: Path) -> None:
    box = SecretBox.from_passphrase("a passphrase of the operator")
    email, password, token = "dave@miaohua.local", "hunter2-Pa55word", "tok-abcdef123456"
    path = tmp_path / "bot.db"
    async with await Store.open(path) as store:
        await store.accounts.replace(
            guild_id=7,
            email_encrypted=box.encrypt(email),
            password_encrypted=box.encrypt(password),
            token_encrypted=box.encrypt(token),
            email_hint=mask_email(email),
        )
        # Check while the WAL still holds the writes, then again after the checkpoint.
        on_disk = _files_bytes(tmp_path)
        assert b"d***@miaohua.local" in on_disk
        for secret in (email, password, token):
            assert secret.encode() not in on_disk
        row = await store.accounts.get(7)
        assert row is not None and box.decrypt(row.password_encrypted) == password
    on_disk = path.read_bytes()
    assert b"d***@miaohua.local" in on_disk
    for secret in (email, password, token):
        assert secret.encode() not in on_disk


def _files_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


# --- settings ------------------------------------------------------------------------------


async def test_settings_defaults_update_and_reset(store: Store) -> None:
    defaults = await store.settings.get(5)
    assert defaults.guild_id == 5
    assert (defaults.model, defaults.count, defaults.allowed_channels) == (None, None, ())

    first = await store.settings.update(5, model="Artist v0.3.0 Beta", allowed_channels=[1, 2])
    assert first.model == "Artist v0.3.0 Beta"
    assert first.allowed_channels == (1, 2)

    second = await store.settings.update(
        5, blocked_words=["nsfw", "血"], daily_quota=10, user_running=2, scale=9
    )
    assert second.model == "Artist v0.3.0 Beta"  # untouched settings keep their value
    assert second.allowed_channels == (1, 2)
    assert second.blocked_words == ("nsfw", "血")
    assert (second.daily_quota, second.user_running, second.scale) == (10, 2, 9)
    assert await store.settings.get(5) == second

    cleared = await store.settings.update(5, daily_quota=None, language="zh-CN", trainer_role_id=9)
    assert (cleared.daily_quota, cleared.language, cleared.trainer_role_id) == (None, "zh-CN", 9)
    assert await store.settings.get(6) == type(defaults)(guild_id=6)

    assert await store.settings.reset(5) is True
    assert (await store.settings.get(5)).model is None


async def test_settings_reject_unknown_names(store: Store) -> None:
    with pytest.raises(ValueError, match="nope"):
        await store.settings.update(5, nope=1)
    assert (await store.settings.get(5)).updated_at is None


# --- tasks ---------------------------------------------------------------------------------


async def test_task_create_and_get(store: Store) -> None:
    task = await store.tasks.create(
        **_task_params(kind="i2i", init_image_url="http://127.0.0.1/a.png", seed=42, locale="en-US")
    )
    assert task.state is TaskState.QUEUED
    assert (task.kind, task.seed, task.init_image_url) == ("i2i", 42, "http://127.0.0.1/a.png")
    assert task.created_at == task.queued_at == task.updated_at
    assert (task.attempts, task.poll_count, task.images) == (0, 0, ())
    assert task.active
    assert await store.tasks.get(task.id) == task
    assert await store.tasks.get_in_guild(10, task.id) == task
    assert await store.tasks.get_in_guild(11, task.id) is None
    assert await store.tasks.get(task.id + 1) is None


async def test_task_ids_increase_and_parent_must_exist(store: Store) -> None:
    first = await store.tasks.create(**_task_params())
    child = await store.tasks.create(**_task_params(parent_id=first.id))
    assert child.id > first.id and child.parent_id == first.id
    with pytest.raises(ConstraintViolation):
        await store.tasks.create(**_task_params(parent_id=999))
    with pytest.raises(ConstraintViolation):
        await store.tasks.create(**_task_params(kind="x2y"))


async def test_task_happy_path(store: Store) -> None:
    task = await store.tasks.create(**_task_params())
    assert await store.tasks.set_status_message(task.id, 555) is True

    submitted = await store.tasks.mark_submitted(task.id, "svc-1")
    assert submitted is not None
    assert (submitted.state, submitted.service_task_id) == (TaskState.SUBMITTED, "svc-1")
    assert submitted.submitted_at is not None

    polled = await store.tasks.record_progress(task.id, 3, 1234.5)
    polled = await store.tasks.record_progress(task.id, 1, 1240.0)
    assert polled is not None
    assert (polled.wait_time, polled.next_poll_at, polled.poll_count) == (1, 1240.0, 2)

    images = [{"url": "http://127.0.0.1/1.png", "seed": 5}, {"url": "http://127.0.0.1/2.png"}]
    done = await store.tasks.mark_done(task.id, images, 5)
    assert done is not None
    assert (done.state, done.images, done.seed_used) == (TaskState.DONE, tuple(images), 5)
    assert done.next_poll_at is None and done.done_at is not None

    assert await store.tasks.mark_delivered(task.id, 777) is True
    delivered = await store.tasks.get(task.id)
    assert delivered is not None
    assert (delivered.state, delivered.result_message_id) == (TaskState.DELIVERED, 777)
    assert delivered.delivered_at is not None and not delivered.active
    assert delivered.status_message_id == 555


@pytest.mark.parametrize(
    ("setup", "illegal"),
    [
        ([], ("mark_done", [], 1)),
        ([], ("mark_delivered", 1)),
        ([], ("record_progress", 1, 2.0)),
        (["submit"], ("mark_submitted", "svc-2")),
        (["submit"], ("mark_delivered", 1)),
        (["submit", "done"], ("mark_done", [], 2)),
        (["submit", "done"], ("mark_cancelled",)),
        (["submit", "done"], ("requeue",)),
        (["submit", "done", "deliver"], ("mark_delivered", 2)),
        (["submit", "done", "deliver"], ("mark_failed", "late")),
        (["cancel"], ("mark_submitted", "svc-3")),
        (["cancel"], ("mark_failed", "late")),
        (["fail"], ("mark_cancelled",)),
        (["fail"], ("requeue",)),
    ],
)
async def test_illegal_task_transition_returns_none_and_changes_nothing(
    store: Store, setup: list[str], illegal: tuple[object, ...]
) -> None:
    task = await store.tasks.create(**_task_params())
    steps = {
        "submit": lambda: store.tasks.mark_submitted(task.id, "svc-1"),
        "done": lambda: store.tasks.mark_done(task.id, [{"url": "u"}], 1),
        "deliver": lambda: store.tasks.mark_delivered(task.id, 9),
        "cancel": lambda: store.tasks.mark_cancelled(task.id),
        "fail": lambda: store.tasks.mark_failed(task.id, "boom"),
    }
    for step in setup:
        assert await steps[step]()
    before = await store.tasks.get(task.id)

    method, *args = illegal
    assert await getattr(store.tasks, str(method))(task.id, *args) in (None, False)
    assert await store.tasks.get(task.id) == before


async def test_delivery_records_the_place_the_result_went_to(store: Store) -> None:
    task = await store.tasks.create(**_task_params())  # asked for the channel
    await store.tasks.mark_submitted(task.id, "svc")
    await store.tasks.mark_done(task.id, [{"url": "u"}], 1)
    assert await store.tasks.mark_delivered(task.id, 7, "dm") is True
    delivered = await store.tasks.get(task.id)
    assert delivered is not None and delivered.delivery == "dm"
    assert await store.tasks.set_result_message(task.id, 8, "channel") is True
    moved = await store.tasks.get(task.id)
    assert moved is not None and (moved.result_message_id, moved.delivery) == (8, "channel")
    assert await store.tasks.set_result_message(task.id, 9) is True
    same = await store.tasks.get(task.id)
    assert same is not None and (same.result_message_id, same.delivery) == (9, "channel")


async def test_transitions_on_missing_task_return_none(store: Store) -> None:
    assert await store.tasks.mark_submitted(404, "svc") is None
    assert await store.tasks.set_status_message(404, 1) is False
    assert await store.tasks.mark_failed(404, "x") is None


async def test_updates_that_return_no_task_say_whether_they_applied(store: Store) -> None:
    task = await store.tasks.create(**_task_params())
    # Not delivered yet: the guarded updates of a delivered task change nothing.
    assert await store.tasks.set_result_message(task.id, 8) is False
    assert await store.tasks.mark_removed(task.id, 3001) is False
    assert await store.tasks.get(task.id) == task
    await store.tasks.mark_submitted(task.id, "svc")
    await store.tasks.mark_done(task.id, [{"url": "u"}], 1)
    await store.tasks.mark_delivered(task.id, 7)
    assert await store.tasks.set_result_message(task.id, 8) is True
    assert await store.tasks.mark_removed(task.id, 3001) is True
    after = await store.tasks.get(task.id)
    assert after is not None and (after.result_message_id, after.removed_by) == (8, 3001)
    assert await store.tasks.set_status_message(task.id, 9) is True
    assert await store.tasks.mark_removed(404, 3001) is False


async def test_rows_map_to_dataclasses_without_reading_their_fields_each_time(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = await store.tasks.create(**_task_params())
    await store.tasks.get(task.id)  # the class's field names are known from here on
    calls = 0
    real_fields = base.fields

    def counted(cls: object) -> object:
        nonlocal calls
        calls += 1
        return real_fields(cls)  # type: ignore[arg-type]

    monkeypatch.setattr(base, "fields", counted)
    tasks = [await store.tasks.get(task.id) for _ in range(3)]
    assert tasks == [task] * 3
    assert calls == 0


async def test_member_preferences_read_while_they_change_are_not_kept(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetch_all = store.db.fetch_all
    read_back, go_on = asyncio.Event(), asyncio.Event()

    async def held_read(sql: str, params: Iterable[Any] = ()) -> list[Row]:
        rows = await fetch_all(sql, params)
        if sql.startswith("SELECT * FROM member_preferences") and not go_on.is_set():
            read_back.set()  # the rows are read; the change lands before they are returned
            await go_on.wait()
        return rows

    monkeypatch.setattr(store.db, "fetch_all", held_read)
    reading = asyncio.create_task(store.preferences.get(1, 2))
    await read_back.wait()
    assert (await store.preferences.update(1, 2, count=3)).count == 3
    go_on.set()
    assert (await reading).count is None  # what it read before the change
    assert (await store.preferences.get(1, 2)).count == 3  # not what that read kept
    await store.preferences.clear(1, 2)
    assert (await store.preferences.get(1, 2)).empty


async def test_concurrent_delivery_happens_exactly_once(store: Store) -> None:
    task = await store.tasks.create(**_task_params())
    await store.tasks.mark_submitted(task.id, "svc")
    await store.tasks.mark_done(task.id, [], 1)
    results = await asyncio.gather(*(store.tasks.mark_delivered(task.id, m) for m in range(20)))
    winners = [m for m, applied in enumerate(results) if applied]
    assert len(winners) == 1
    delivered = await store.tasks.get(task.id)
    assert delivered is not None and delivered.result_message_id == winners[0]


async def test_requeue_fail_and_cancel(store: Store) -> None:
    task = await store.tasks.create(**_task_params())
    await store.tasks.mark_submitted(task.id, "svc-1")
    await store.tasks.record_progress(task.id, 4, 99.0)
    requeued = await store.tasks.requeue(task.id, not_before=150.0)
    assert requeued is not None
    assert requeued.state is TaskState.QUEUED
    assert (requeued.service_task_id, requeued.submitted_at, requeued.wait_time) == (None,) * 3
    assert (requeued.attempts, requeued.poll_count, requeued.next_poll_at) == (1, 0, 150.0)
    again = await store.tasks.requeue(task.id)
    assert again is not None and again.attempts == 2 and again.next_poll_at is None

    failed = await store.tasks.mark_failed(task.id, "account_busy", "603 five times")
    assert failed is not None
    assert (failed.state, failed.error, failed.error_detail) == (
        TaskState.FAILED,
        "account_busy",
        "603 five times",
    )
    assert failed.failed_at is not None

    other = await store.tasks.create(**_task_params())
    await store.tasks.mark_submitted(other.id, "svc-2")
    cancelled = await store.tasks.mark_cancelled(other.id)
    assert cancelled is not None and cancelled.state is TaskState.CANCELLED

    third = await store.tasks.create(**_task_params())
    await store.tasks.mark_submitted(third.id, "svc-3")
    await store.tasks.mark_done(third.id, [], 1)
    undeliverable = await store.tasks.mark_failed(third.id, "delivery_failed")
    assert undeliverable is not None and undeliverable.state is TaskState.FAILED


async def test_task_queries(store: Store) -> None:
    a = await store.tasks.create(**_task_params(user_id=1))
    b = await store.tasks.create(**_task_params(user_id=2))
    c = await store.tasks.create(**_task_params(user_id=1))
    d = await store.tasks.create(**_task_params(guild_id=99, user_id=1))
    await store.tasks.mark_submitted(b.id, "svc-b")
    await store.tasks.mark_cancelled(c.id)

    queued = await store.tasks.list_by_state(TaskState.QUEUED)
    assert [t.id for t in queued] == [a.id, d.id]
    active = await store.tasks.list_by_state("queued", "submitted")
    assert [t.id for t in active] == [a.id, b.id, d.id]
    assert await store.tasks.list_by_state() == []

    assert await store.tasks.count_active(10) == 2
    assert await store.tasks.count_active(10, user_id=1) == 1
    assert await store.tasks.count_active(10, user_id=3) == 0
    assert await store.tasks.count_active(99) == 1

    assert [t.id for t in await store.tasks.recent(10)] == [c.id, b.id, a.id]
    assert [t.id for t in await store.tasks.recent(10, user_id=1)] == [c.id, a.id]
    assert [t.id for t in await store.tasks.recent(10, limit=1)] == [c.id]

    assert [t.id for t in await store.tasks.list_by_state(TaskState.CANCELLED)] == [c.id]


# --- trainings -----------------------------------------------------------------------------


async def _training(store: Store, **overrides: object):
    params: dict[str, object] = {
        "guild_id": 10,
        "channel_id": 20,
        "user_id": 30,
        "name": "train model1",
        "main_body": "Style",
        "base_model": "自动选择",
        "trigger_word": "one girl",
        "pending_images": ["/tmp/a.png", "/tmp/b.png"],
    }
    params.update(overrides)
    return await store.trainings.create(**params)  # type: ignore[arg-type]


async def test_training_round_trip_and_update(store: Store) -> None:
    job = await _training(store, nsfw=True, description="desc")
    assert job.state is TrainingState.UPLOADING
    assert job.pending_images == ("/tmp/a.png", "/tmp/b.png")
    assert (job.nsfw, job.description, job.progress, job.dataset_ids) == (True, "desc", 0.0, ())
    assert await store.trainings.get(job.id) == job
    assert await store.trainings.get_in_guild(10, job.id) == job
    assert await store.trainings.get_in_guild(11, job.id) is None

    updated = await store.trainings.update(
        job.id,
        uploaded_urls=["http://127.0.0.1/u1"],
        pending_images=[],
        progress_message_id=42,
    )
    assert updated is not None
    assert updated.uploaded_urls == ("http://127.0.0.1/u1",)
    assert updated.pending_images == ()
    assert updated.progress_message_id == 42
    assert updated.state is TrainingState.UPLOADING
    assert await store.trainings.get(job.id) == updated
    assert await store.trainings.update(404, error="x") is None


async def test_training_update_rejects_unlisted_fields(store: Store) -> None:
    job = await _training(store)
    for field in ("state", "guild_id", "id; DROP TABLE trainings"):
        with pytest.raises(ValueError, match="cannot update"):
            await store.trainings.update(job.id, **{field: "done"})
    assert await store.trainings.get(job.id) == job


async def test_training_guarded_state_changes(store: Store) -> None:
    job = await _training(store)
    moved = await store.trainings.set_state(
        job.id, "creating_dataset", from_states=["uploading"], uploaded_urls=["u1", "u2"]
    )
    assert moved is not None
    assert (moved.state, moved.uploaded_urls) == (TrainingState.CREATING_DATASET, ("u1", "u2"))

    # Wrong source state: nothing changes, fields included.
    assert await store.trainings.set_state(job.id, "training", ["submitting"], error="x") is None
    assert await store.trainings.get(job.id) == moved

    await store.trainings.set_state(job.id, "submitting", ["creating_dataset"], dataset_ids=[7])
    training = await store.trainings.set_state(
        job.id, TrainingState.TRAINING, [TrainingState.SUBMITTING], service_task_id=123
    )
    assert training is not None
    assert (training.dataset_ids, training.service_task_id) == (("7",), "123")
    assert training.finished_at is None

    progressed = await store.trainings.update(job.id, progress=0.5, last_progress_at=9.0)
    assert progressed is not None and progressed.progress == 0.5

    done = await store.trainings.set_state(
        job.id, "done", ["training"], progress=1, model_name="train_model1"
    )
    assert done is not None
    assert (done.state, done.model_name, done.progress) == (TrainingState.DONE, "train_model1", 1.0)
    assert done.finished_at is not None and not done.active
    assert await store.trainings.set_state(job.id, "failed", ["training"]) is None
    assert await store.trainings.set_state(job.id, "failed", []) is None
    with pytest.raises(ValueError):
        await store.trainings.set_state(job.id, "exploded", ["done"])


async def test_training_listing(store: Store) -> None:
    a = await _training(store)
    b = await _training(store)
    c = await _training(store, guild_id=11)
    await store.trainings.set_state(b.id, "cancelled", ["uploading"])
    assert [t.id for t in await store.trainings.list_active()] == [a.id, c.id]
    assert await store.trainings.count_active(10) == 1
    assert await store.trainings.count_active(12) == 0
    assert [t.id for t in await store.trainings.recent(10)] == [b.id, a.id]
    assert [t.id for t in await store.trainings.recent(10, limit=1)] == [b.id]


# --- datasets, models, usage ---------------------------------------------------------------


async def test_dataset_round_trip(store: Store) -> None:
    first = await store.datasets.add(
        guild_id=1, dataset_id="ds-1", name="cats", image_count=2, created_by=5
    )
    assert await store.datasets.get(1, "ds-1") == first
    assert await store.datasets.get(2, "ds-1") is None
    again = await store.datasets.add(guild_id=1, dataset_id="ds-1", name="cats2", image_count=3)
    assert (again.name, again.image_count, again.created_at) == ("cats2", 3, first.created_at)
    await store.datasets.add(guild_id=1, dataset_id="ds-2", name="dogs", image_count=1)
    assert [d.dataset_id for d in await store.datasets.for_guild(1)] == ["ds-1", "ds-2"]
    assert await store.datasets.delete(1, "ds-1") is True
    assert await store.datasets.delete(1, "ds-1") is False
    assert [d.dataset_id for d in await store.datasets.for_guild(1)] == ["ds-2"]


async def test_model_round_trip(store: Store) -> None:
    job = await _training(store)
    model = await store.models.add(
        guild_id=10,
        model_name="train_model1",
        trigger_word="one girl",
        trained_by=30,
        training_id=job.id,
    )
    assert (model.display_name, model.training_id) == ("train_model1", job.id)
    assert await store.models.get(10, "train_model1") == model
    assert await store.models.get(11, "train_model1") is None
    renamed = await store.models.rename(10, "train_model1", "My style")
    assert renamed is not None and renamed.display_name == "My style"
    assert await store.models.rename(10, "nope", "x") is None
    await store.models.add(guild_id=10, model_name="m2", display_name="Second")
    assert [m.display_name for m in await store.models.for_guild(10)] == ["My style", "Second"]
    with pytest.raises(ConstraintViolation):
        await store.models.add(guild_id=10, model_name="m3", training_id=999)
    assert await store.models.delete(10, "m2") is True
    assert await store.models.delete(10, "m2") is False


async def test_usage_counter_is_atomic_under_concurrency(store: Store) -> None:
    results = await asyncio.gather(*(store.usage.increment(1, 2, "2024-05-01") for _ in range(50)))
    assert sorted(results) == list(range(1, 51))
    assert await store.usage.get(1, 2, "2024-05-01") == 50
    assert await store.usage.get(1, 3, "2024-05-01") == 0


async def test_usage_is_charged_only_while_the_member_has_room_in_their_line(
    store: Store,
) -> None:
    day = "2024-05-01"
    first = await store.tasks.create(**_task_params())  # guild 10, member 30
    await store.tasks.create(**_task_params(user_id=31))  # another member's
    await store.tasks.create(**_task_params(guild_id=11))  # the member's, in another guild
    assert await store.usage.increment_unless_busy(10, 30, day, 2, busy_at=2) == 2  # new row
    assert await store.usage.increment_unless_busy(10, 30, day, 3, busy_at=2) == 5  # added
    await store.tasks.mark_submitted(first.id, "svc")  # submitted counts as unfinished too
    await store.tasks.create(**_task_params())
    assert await store.usage.increment_unless_busy(10, 30, day, 1, busy_at=2) is None
    assert await store.usage.increment_unless_busy(10, 30, "2024-05-02", 1, busy_at=2) is None
    assert await store.usage.get(10, 30, day) == 5  # nothing charged
    assert await store.usage.get(10, 30, "2024-05-02") == 0
    await store.tasks.mark_done(first.id, [], 1)  # finished: room again
    assert await store.usage.increment_unless_busy(10, 30, day, 1, busy_at=2) == 6


async def test_usage_increment_by_n_refund_and_prune(store: Store) -> None:
    assert await store.usage.increment(1, 2, "2024-05-01", 3) == 3
    assert await store.usage.increment(1, 2, "2024-05-01", -1) == 2
    assert await store.usage.increment(1, 2, "2024-05-02") == 1
    assert await store.usage.prune("2024-05-02") == 1
    assert await store.usage.get(1, 2, "2024-05-01") == 0
    assert await store.usage.get(1, 2, "2024-05-02") == 1
