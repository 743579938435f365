"""A process serves only its shards' guilds, and no two processes serve the same shard.

On both backends: the store's lists of unfinished work keep to the process's shards
(Discord's formula, guild >> 22 % shard_count), and a shard claimed by one process is
refused to another until the first one closes (SQLite: a lock file per shard; PostgreSQL:
an advisory lock per shard on a connection of its own).
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest

from bot.store import Store, StoreUnavailable, TaskState, load_migrations, until_stored
from bot.store.shards import ShardScope, ShardsTaken, shard_of
from bot.store.store import open_database
from tests.conftest import DatabaseFactory

pytestmark = pytest.mark.backends()

# Guild ids on shard 0 and shard 1 of 2 (Discord: (guild_id >> 22) % shard_count).
ON_0 = (2 << 22) + 17
ON_1 = (3 << 22) + 17


def test_guilds_land_on_the_shards_discord_puts_them_on() -> None:
    assert (shard_of(ON_0, 2), shard_of(ON_1, 2)) == (0, 1)
    assert ShardScope.of(2, [1]).owns(ON_1) and not ShardScope.of(2, [1]).owns(ON_0)
    assert ShardScope.of(None, None).everything and ShardScope.of(2, None).everything
    with pytest.raises(ValueError, match="between 0 and 1"):
        ShardScope.of(2, [2])


async def _fill(target: object) -> dict[int, dict[str, int]]:
    """Unfinished and finished work in a guild on each shard; ids by guild and kind."""
    ids: dict[int, dict[str, int]] = {}
    async with await Store.open(str(target), clock=lambda: 1000.0) as store:
        for guild_id in (ON_0, ON_1):
            params = {
                "guild_id": guild_id, "channel_id": 1, "user_id": 2, "kind": "t2i",
                "model": "m", "prompt": "p", "count": 1, "scale": 7, "size": "512x512",
            }  # fmt: skip
            queued = await store.tasks.create(**params)
            submitted = await store.tasks.create(**params)
            await store.tasks.mark_submitted(submitted.id, f"svc-{submitted.id}")
            old = await store.tasks.create(**params)
            await store.tasks.mark_cancelled(old.id)
            training = await store.trainings.create(
                guild_id=guild_id, channel_id=1, user_id=2, name="n", description="",
                main_body="person", base_model="b", trigger_word="t", nsfw=False,
            )  # fmt: skip
            ids[guild_id] = {
                "queued": queued.id,
                "submitted": submitted.id,
                "old": old.id,
                "training": training.id,
            }
    return ids


async def test_a_process_lists_only_its_shards_unfinished_work(
    new_database: DatabaseFactory,
) -> None:
    target = await new_database()
    ids = await _fill(target)
    for shard, mine, theirs in ((0, ON_0, ON_1), (1, ON_1, ON_0)):
        scope = ShardScope.of(2, [shard])
        async with await Store.open(str(target), scope=scope) as store:
            queued = await store.tasks.list_by_state(TaskState.QUEUED)
            submitted = await store.tasks.list_by_state(TaskState.SUBMITTED)
            assert [t.id for t in queued] == [ids[mine]["queued"]]
            assert [t.id for t in submitted] == [ids[mine]["submitted"]]
            assert [t.id for t in await store.trainings.list_active()] == [ids[mine]["training"]]
            # Pruning old finished tasks keeps to the shard too.
            assert await store.tasks.prune_finished(before=10_000.0) == 1
            assert await store.tasks.get(ids[mine]["old"]) is None
            if shard == 0:
                assert await store.tasks.get(ids[theirs]["old"]) is not None
    async with await Store.open(str(target)) as everything:
        active = await everything.tasks.list_by_state(TaskState.QUEUED, TaskState.SUBMITTED)
        assert len(active) == 4


async def test_a_second_process_is_refused_a_shard_already_served(
    new_database: DatabaseFactory,
) -> None:
    target = str(await new_database())
    async with await Store.open(target) as _:
        pass  # the schema
    first, second, third = [await open_database(target) for _ in range(3)]
    lost: list[str] = []
    try:
        await first.claim_shards(ShardScope.of(2, [0]), on_lost=lambda: lost.append("first"))
        with pytest.raises(ShardsTaken, match="shard 0 of 2 is already served"):
            await second.claim_shards(ShardScope.of(2, [0, 1]), on_lost=lambda: None)
        # The refusal took nothing: shard 1 is still free for another process.
        await third.claim_shards(ShardScope.of(2, [1]), on_lost=lambda: None)
        await first.close()  # the first process stops: its shard is free again
        await second.claim_shards(ShardScope.of(2, [0]), on_lost=lambda: None)
        assert lost == []  # closing on purpose is not losing the claim
    finally:
        for db in (first, second, third):
            await db.close()


async def _terminate(url: str, pids_sql: str) -> int:
    """End the server connections whose pids `pids_sql` selects; how many were ended."""
    admin = await asyncpg.connect(url)
    try:
        ended = await admin.fetchval(
            f"SELECT count(pg_terminate_backend(pid)) FROM ({pids_sql}) AS chosen"
            " WHERE pid <> pg_backend_pid()"
        )
        return int(ended)
    finally:
        await admin.close()


@pytest.mark.backends("postgresql")
async def test_losing_the_connection_that_holds_the_shards_is_reported(
    new_database: DatabaseFactory, backend: str
) -> None:
    target = str(await new_database())
    async with await Store.open(target) as _:
        pass
    db = await open_database(target)
    lost = asyncio.Event()
    try:
        await db.claim_shards(ShardScope.of(1, [0]), on_lost=lost.set)
        # The server ends the connection holding the advisory locks.
        await _terminate(target, "SELECT pid FROM pg_locks WHERE locktype = 'advisory'")
        await asyncio.wait_for(lost.wait(), 10)
        # The shard is free for a process started again.
        again = await open_database(target)
        try:
            await again.claim_shards(ShardScope.of(1, [0]), on_lost=lambda: None)
        finally:
            await again.close()
    finally:
        await db.close()


@pytest.mark.backends("postgresql")
async def test_a_lost_database_connection_is_retried_on_a_new_one(
    new_database: DatabaseFactory, backend: str
) -> None:
    target = str(await new_database())
    async with await Store.open(target) as store:
        await store.db.claim_shards(ShardScope.of(1, [0]), on_lost=lambda: None)
        task = await store.tasks.create(
            guild_id=ON_0, channel_id=1, user_id=2, kind="t2i", model="m", prompt="p",
            count=1, scale=7, size="512x512",
        )  # fmt: skip
        before = await store.db.fetch_one("SELECT pg_backend_pid()")
        # A server restart or a network cut, as far as the bot's queries go.
        ended = await _terminate(
            target, "SELECT pid FROM pg_stat_activity WHERE application_name = 'miaohua-bot'"
        )
        assert ended == 1
        # The next statement fails with StoreUnavailable (nothing written, retried) or, once
        # the end of the connection is known, goes straight to a new one.
        cancelled = await until_stored(
            lambda: store.tasks.mark_cancelled(task.id), what="the cancel", first_delay=0.01
        )
        assert cancelled is not None and cancelled.state == TaskState.CANCELLED
        after = await store.db.fetch_one("SELECT pg_backend_pid()")
        assert before is not None and after is not None and before[0] != after[0]


@pytest.mark.backends("postgresql")
async def test_the_database_password_is_never_logged_nor_in_errors(
    new_database: DatabaseFactory, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plain = str(await new_database())
    # The embedded server trusts its socket: any password is accepted, so one can be given.
    secret = "pw-Never-Logged-7"
    url = plain.replace("postgresql://postgres:@", f"postgresql://postgres:{secret}@")
    assert secret in url
    async with await Store.open(url) as store:
        await store.tasks.list_by_state(TaskState.QUEUED)
    opened = [r.getMessage() for r in caplog.records if "Opened store" in r.getMessage()]
    assert opened and "postgres:***@" in opened[0]
    unreachable = url.replace("host=", "host=/nonexistent")
    with pytest.raises(StoreUnavailable) as refused:
        await Store.open(unreachable)
    assert "postgres:***@" in str(refused.value)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert secret not in logged and secret not in str(refused.value)


async def test_processes_starting_together_on_an_empty_database_both_open_it(
    new_database: DatabaseFactory, backend: str
) -> None:
    for _ in range(5 if backend == "postgresql" else 30):  # the race is in the first statements
        target = str(await new_database())
        opened = await asyncio.gather(*(Store.open(target) for _ in range(2)))
        for store in opened:
            assert await store.db.schema_version() == len(load_migrations())
            await store.close()
