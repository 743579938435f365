"""`miaohua-bot storage migrate --from URL --to URL`: move a deployment between databases."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.__main__ import main
from bot.crypto import SecretBox
from bot.store.database import Database, describe
from bot.store.migrate import load_migrations, migrate
from bot.store.store import Store, open_database
from bot.store.transfer import TABLES, copy_database
from tests.conftest import ADMIN_A, CH_A, GUILD_A, GUILD_B, MEMBER_A, SECRET_KEY, Harness
from tests.databases import PostgresServer
from tests.genutil import FAST_POLLING
from tests.test_history import generate, history, shown_ids

PASSWORD = "s3cret"
DAY = 86_400.0
START = 1_700_000_000.25  # epoch seconds with a fraction: REAL columns must keep it


class Clock:
    """A settable clock for the repositories (old tasks are made in the past)."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _with_password(url: str) -> str:
    """The server's URL with a password (the embedded server trusts any on its socket)."""
    assert "postgres:@" in url, url
    return url.replace("postgres:@", f"postgres:{PASSWORD}@", 1)


async def _cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> int:
    """Run `main` as the console script would (in a thread: it runs its own event loop),
    with the settings in `env` (names without the MIAOHUA_BOT_ prefix)."""
    for name in list(os.environ):
        if name.startswith("MIAOHUA_BOT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MIAOHUA_BOT_SECURITY__SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("MIAOHUA_BOT_STORAGE__PATH", str(tmp_path / "unused.sqlite3"))
    for name, value in (env or {}).items():
        monkeypatch.setenv(f"MIAOHUA_BOT_{name}", value)
    return await asyncio.to_thread(main, ["storage", *args])


async def _fill(target: str | Path) -> dict[str, int]:
    """A database with rows in every table, made through the repositories; some ids."""
    clock = Clock()
    box = SecretBox.from_passphrase(SECRET_KEY)
    store = await Store.open(target, clock=clock)
    try:
        accounts = store.accounts
        await accounts.replace(
            guild_id=GUILD_A, email_encrypted=box.encrypt("old@a.test"),
            password_encrypted=box.encrypt("old-pw"), email_hint="o***@a.test",
        )  # fmt: skip
        account = await accounts.replace(
            guild_id=GUILD_A, email_encrypted=box.encrypt("a@guild.test"),
            password_encrypted=box.encrypt("pw-A"), email_hint="a***@guild.test",
            token_encrypted=box.encrypt("token-A"), last_login_at=START - 5.5, token_ok=True,
        )  # fmt: skip
        await accounts.replace(
            guild_id=GUILD_B, email_encrypted=box.encrypt("b@guild.test"),
            password_encrypted=box.encrypt("pw-B"), email_hint="b***@guild.test",
        )  # fmt: skip
        await store.settings.update(
            GUILD_A, model="m1", allowed_channels=[CH_A], blocked_words=["bad"],
            daily_quota=5, language="zh-CN", user_running=3,
        )  # fmt: skip
        common: dict[str, Any] = {
            "guild_id": GUILD_A, "channel_id": CH_A, "user_id": MEMBER_A, "kind": "t2i",
            "model": "m1", "count": 2, "scale": 7, "size": "512x512",
        }  # fmt: skip
        parent = await store.tasks.create(prompt="赛博朋克 fox", locale="zh-CN", **common)
        await store.tasks.mark_submitted(parent.id, "svc-1", account.id)
        await store.tasks.mark_done(parent.id, [{"url": "http://x/1.png", "seed": 7}], 7)
        await store.tasks.mark_delivered(parent.id, 5555)
        child = await store.tasks.create(
            prompt="ink fox", parent_id=parent.id, origin="rerun", style="Ink",
            member_prompt="fox", delivery="dm", seed=9, **common,
        )  # fmt: skip
        # The newest task is pruned: ids stay above it (AUTOINCREMENT, carried over).
        clock.now = START - 100 * DAY
        doomed = await store.tasks.create(prompt="old", **common)
        await store.tasks.mark_failed(doomed.id, "service", "gone")
        clock.now = START
        assert await store.tasks.prune_finished(START - 50 * DAY) == 1
        training = await store.trainings.create(
            guild_id=GUILD_A, channel_id=CH_A, user_id=MEMBER_A, name="cats",
            main_body="cat", base_model="base", trigger_word="zz", pending_images=["a.png"],
            account_id=account.id,
        )  # fmt: skip
        await store.trainings.set_state(training.id, "done", ["uploading"], model_name="lora-1")
        await store.datasets.add(
            guild_id=GUILD_A, dataset_id="ds-1", name="cats", image_count=3, created_by=MEMBER_A
        )
        await store.models.add(
            guild_id=GUILD_A, model_name="lora-1", display_name="Cats", trigger_word="zz",
            trained_by=MEMBER_A, training_id=training.id,
        )  # fmt: skip
        await store.usage.increment(GUILD_A, MEMBER_A, "2023-11-14", 3)
        await store.styles.save(
            guild_id=GUILD_A, name="Ink", prompt="ink {prompt}", created_by=ADMIN_A, limit=25
        )
        await store.preferences.update(GUILD_A, MEMBER_A, model="m2", delivery="dm")
    finally:
        await store.close()
    return {"parent": parent.id, "child": child.id, "pruned": doomed.id}


Dump = dict[str, list[dict[str, Any]]]


async def _dump(target: str | Path) -> Dump:
    """Every row of every copied table, in key order."""
    db = await open_database(target)
    try:
        return {table.name: await _rows(db, table.name, table.key) for table in TABLES}
    finally:
        await db.close()


async def _rows(db: Database, table: str, key: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = await db.fetch_all(f"SELECT * FROM {table} ORDER BY {', '.join(key)}")
    # Rows are sqlite3.Row or asyncpg.Record: neither iterates over its column names.
    return [{name: row[name] for name in row.keys()} for row in rows]  # noqa: SIM118


def _lines(text: str) -> list[str]:
    return text.strip().splitlines()


def _only_line(text: str) -> str:
    lines = _lines(text)
    assert len(lines) == 1, text
    return lines[0]


async def test_sqlite_to_postgresql_and_back_copies_every_row(
    tmp_path, monkeypatch, capsys, postgres_server: PostgresServer
):
    first = tmp_path / "first.sqlite3"
    ids = await _fill(first)
    original = await _dump(first)
    assert all(original[table.name] for table in TABLES), "every table has rows to copy"
    pg = _with_password(await postgres_server.create())

    try:
        code = await _cli(monkeypatch, tmp_path, "migrate", "--from", str(first), "--to", pg)
        out, err = capsys.readouterr()
        assert code == 0, err
        assert err == ""
        assert PASSWORD not in out
        lines = _lines(out)
        assert lines[0] == f"migrating {first} to {pg.replace(PASSWORD, '***')}"
        assert "the bot must be stopped while migrating" in lines[1]
        assert "same security.secret_key" in lines[2]
        counts = {name: len(rows) for name, rows in original.items()}
        assert lines[3:-1] == [f"  {name}: {n} rows" for name, n in counts.items()]
        assert lines[-1].startswith(f"migrated {sum(counts.values())} rows in {len(TABLES)} tables")
        assert "row count checked" in lines[-1] and "storage.url" in lines[-1]
        assert await _dump(pg) == original

        # And back, into a new SQLite file named by an absolute sqlite://// URL.
        second = tmp_path / "second.sqlite3"
        code = await _cli(
            monkeypatch, tmp_path, "migrate", "--from", pg, "--to", f"sqlite:///{second}"
        )
        out, err = capsys.readouterr()
        assert code == 0, err
        assert PASSWORD not in out
        assert await _dump(second) == original

        box = SecretBox.from_passphrase(SECRET_KEY)
        for target in (pg, second):
            store = await Store.open(target)
            try:
                account = await store.accounts.get(GUILD_A)
                assert account is not None
                assert box.decrypt(account.email_encrypted) == "a@guild.test"
                assert account.token_encrypted is not None
                assert box.decrypt(account.token_encrypted) == "token-A"
                child = await store.tasks.get(ids["child"])
                assert child is not None and child.parent_id == ids["parent"]
                assert await store.tasks.was_pruned(GUILD_A, ids["pruned"])
                # New ids come after every id the first database handed out, pruned ones too.
                task = await store.tasks.create(
                    guild_id=GUILD_A, channel_id=CH_A, user_id=MEMBER_A, kind="t2i",
                    model="m1", prompt="new", count=1, scale=7, size="512x512",
                )  # fmt: skip
                assert task.id == ids["pruned"] + 1
                assert not await store.tasks.was_pruned(GUILD_A, task.id)
            finally:
                await store.close()
    finally:
        await postgres_server.drop_created()


async def test_values_take_the_target_column_types(
    tmp_path, monkeypatch, capsys, postgres_server: PostgresServer
):
    """SQLite keeps any value in any column; PostgreSQL takes exactly the column's type."""
    db = tmp_path / "loose.sqlite3"
    ids = await _fill(db)
    box = SecretBox.from_passphrase(SECRET_KEY)
    token = box.encrypt("token-A").decode("ascii")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE tasks SET created_at = 5 WHERE id = ?", (ids["parent"],))
        # A BLOB column holding TEXT (as an older tool might have written it).
        conn.execute("UPDATE accounts SET token_encrypted = ? WHERE token_ok = 1", (token,))
        assert conn.execute(
            "SELECT typeof(token_encrypted) FROM accounts WHERE token_ok = 1"
        ).fetchone() == ("text",)
    pg = await postgres_server.create()
    try:
        code = await _cli(monkeypatch, tmp_path, "migrate", "--from", str(db), "--to", pg)
        assert code == 0, capsys.readouterr().err
        store = await Store.open(pg)
        try:
            task = await store.tasks.get(ids["parent"])
            assert task is not None and task.created_at == 5.0
            account = await store.accounts.get(GUILD_A)
            assert account is not None and isinstance(account.token_encrypted, bytes)
            assert box.decrypt(account.token_encrypted) == "token-A"
        finally:
            await store.close()
    finally:
        await postgres_server.drop_created()


async def test_a_failed_copy_commits_nothing_and_says_so(
    tmp_path, monkeypatch, capsys, postgres_server: PostgresServer
):
    db = tmp_path / "odd.sqlite3"
    ids = await _fill(db)
    with sqlite3.connect(db) as conn:  # not an integer: PostgreSQL's BIGINT cannot take it
        conn.execute("UPDATE tasks SET wait_time = 2.5 WHERE id = ?", (ids["child"],))
    pg = await postgres_server.create()
    try:
        code = await _cli(monkeypatch, tmp_path, "migrate", "--from", str(db), "--to", pg)
        assert code == 1
        line = _only_line(capsys.readouterr().err)
        assert line.startswith(
            f"miaohua-bot: migrate failed: tasks.wait_time of the row with id {ids['child']} "
            "holds a float, which the target's int column cannot take unchanged"
        ), line
        assert "nothing was committed to the target" in line
        # The tables copied before tasks were rolled back with it: the target is empty.
        assert all(not rows for rows in (await _dump(pg)).values())
        # Fixed at the source, the same target takes the copy.
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE tasks SET wait_time = 2 WHERE id = ?", (ids["child"],))
        code = await _cli(monkeypatch, tmp_path, "migrate", "--from", str(db), "--to", pg)
        assert code == 0, capsys.readouterr().err
        assert await _dump(pg) == await _dump(db)
    finally:
        await postgres_server.drop_created()


async def test_a_target_with_rows_is_refused_and_left_as_it_was(
    tmp_path, monkeypatch, capsys, postgres_server: PostgresServer
):
    source = tmp_path / "source.sqlite3"
    await _fill(source)
    pg = await postgres_server.create()
    try:
        store = await Store.open(pg)
        try:
            await store.styles.save(guild_id=GUILD_B, name="Own", prompt="{prompt}", limit=5)
        finally:
            await store.close()
        before = await _dump(pg)
        other_sqlite = tmp_path / "other.sqlite3"
        await _fill(other_sqlite)
        sqlite_before = other_sqlite.read_bytes()

        for target, table, rows in (
            (_with_password(pg), "styles", 1),
            (str(other_sqlite), "accounts", 3),
        ):
            code = await _cli(
                monkeypatch, tmp_path, "migrate", "--from", str(source), "--to", target
            )
            out, err = capsys.readouterr()
            assert code == 1
            assert _only_line(err) == (
                f"miaohua-bot: migrate failed: the target is not empty (table {table} has {rows} "
                "rows): migrate only into an empty database, so that nothing is merged; the "
                "target was left as it was"
            )
            assert PASSWORD not in out + err
        assert await _dump(pg) == before
        assert other_sqlite.read_bytes() == sqlite_before
    finally:
        await postgres_server.drop_created()


async def test_the_same_database_twice_is_refused(
    tmp_path, monkeypatch, capsys, postgres_server: PostgresServer
):
    db = tmp_path / "bot.sqlite3"
    await _fill(db)
    pg = await postgres_server.create()
    try:
        pairs = [
            (str(db), f"sqlite:///{db}", str(db)),
            (str(db), str(tmp_path / "." / "bot.sqlite3"), str(db)),
            (pg, _with_password(pg), describe(pg)),
        ]
        for source, target, shown in pairs:
            code = await _cli(monkeypatch, tmp_path, "migrate", "--from", source, "--to", target)
            out, err = capsys.readouterr()
            assert code == 1
            assert out == ""
            assert _only_line(err) == (
                f"miaohua-bot: migrate failed: --from and --to are the same database ({shown})"
            )
    finally:
        await postgres_server.drop_created()


async def test_a_source_at_an_older_schema_or_missing_is_refused(tmp_path, monkeypatch, capsys):
    old = tmp_path / "old.sqlite3"
    db = await open_database(old)
    try:
        latest = load_migrations()[-1].version
        await migrate(db, target=latest - 1)
    finally:
        await db.close()
    target = tmp_path / "new.sqlite3"
    code = await _cli(monkeypatch, tmp_path, "migrate", "--from", str(old), "--to", str(target))
    assert code == 1
    assert _only_line(capsys.readouterr().err) == (
        f"miaohua-bot: migrate failed: the source is at schema version {latest - 1}, this "
        f"miaohua-bot at {latest}: run this version of the bot on it once (it upgrades the "
        "schema at start), then migrate"
    )
    assert not target.exists(), "a refused copy creates no target"

    missing = tmp_path / "nowhere.sqlite3"
    code = await _cli(monkeypatch, tmp_path, "migrate", "--from", str(missing), "--to", str(target))
    assert code == 1
    assert _only_line(capsys.readouterr().err) == (
        f"miaohua-bot: migrate failed: no database at {missing}"
    )
    assert not missing.exists() and not target.exists()


@pytest.mark.backends()
async def test_every_table_the_migrations_create_is_copied(new_database):
    db = await open_database(await new_database())
    try:
        await migrate(db)
        assert sorted(await db.table_names()) == sorted(table.name for table in TABLES)
    finally:
        await db.close()


async def test_backup_of_a_postgresql_database_points_to_pg_dump(
    tmp_path, monkeypatch, capsys, postgres_server: PostgresServer
):
    url = _with_password(await postgres_server.create())
    try:
        monkeypatch.chdir(tmp_path)
        code = await _cli(monkeypatch, tmp_path, "backup", "b.dump", env={"STORAGE__URL": url})
        out, err = capsys.readouterr()
        assert code == 1 and out == ""
        shown = url.replace(PASSWORD, "***")
        assert _only_line(err) == (
            "miaohua-bot: backup failed: storage.url is a PostgreSQL database, which "
            f"PostgreSQL's own tools back up: pg_dump --format=custom --file=b.dump '{shown}' "
            f"(restore into an empty database with pg_restore --clean --dbname '{shown}' b.dump)"
        )
        assert not (tmp_path / "b.dump").exists()
    finally:
        await postgres_server.drop_created()


async def test_the_bot_carries_on_with_the_migrated_postgresql_database(
    harness_factory, monkeypatch, capsys, postgres_server: PostgresServer
):
    h: Harness = await harness_factory(miaohua=FAST_POLLING)
    made = [await generate(h, "a fox before the move"), await generate(h, "a cat before the move")]
    await h.stop()  # the bot is stopped while migrating
    pg = await postgres_server.create()
    try:
        sqlite_db = h.settings.storage.database
        code = await _cli(monkeypatch, h.tmp_path, "migrate", "--from", str(sqlite_db), "--to", pg)
        assert code == 0, capsys.readouterr().err

        # Started on PostgreSQL with the same key: it sees the results made before and uses
        # the accounts copied encrypted to make new ones, numbered after the old.
        storage = h.settings.storage.model_copy(update={"url": SecretStr(pg)})
        h.settings = h.settings.model_copy(update={"storage": storage})
        await h.start()
        assert h.bot.store.db.dialect == "postgresql"
        assert shown_ids(await history(h)) == sorted(made, reverse=True)
        after = await generate(h, "a fox after the move")
        assert after == max(made) + 1
        assert (await h.bot.store.tasks.get(after)).state == "delivered"
        assert shown_ids(await history(h)) == [after, *sorted(made, reverse=True)]
        await h.stop()
    finally:
        await postgres_server.drop_created()


async def test_large_tables_are_copied_page_by_page(tmp_path, postgres_server: PostgresServer):
    """Pages of two rows: every table, composite keys included, is read in several pages."""
    first, second = tmp_path / "first.sqlite3", tmp_path / "second.sqlite3"
    await _fill(first)
    store = await Store.open(first)
    try:
        for n in range(5):
            await store.usage.increment(GUILD_A, MEMBER_A + n % 2, f"2023-11-{10 + n}", n + 1)
            await store.preferences.update(GUILD_B, MEMBER_A + n, size="512x512")
            await store.styles.save(guild_id=GUILD_B, name=f"S{n}", prompt="{prompt}", limit=25)
            await store.tasks.create(
                guild_id=GUILD_B, channel_id=CH_A, user_id=MEMBER_A, kind="t2i",
                model="m", prompt=f"p{n}", count=1, scale=7, size="512x512",
            )  # fmt: skip
    finally:
        await store.close()
    original = await _dump(first)
    pg = await postgres_server.create()
    try:
        for source, target in ((first, pg), (pg, second)):
            src, dst = await open_database(source), await open_database(target)
            try:
                report = await copy_database(src, dst, batch=2)
            finally:
                await dst.close()
                await src.close()
            assert report.row_counts == {name: len(rows) for name, rows in original.items()}
            assert await _dump(target) == original
    finally:
        await postgres_server.drop_created()
