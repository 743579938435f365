"""Service faults, Discord faults, hostile prompts, secrets and isolation, end to end."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bot.store import TaskState
from tests.conftest import (
    ACCOUNTS,
    ADMIN_A,
    ADMIN_B,
    CH_A,
    CH_B,
    DISCORD_TOKEN,
    GUILD_A,
    GUILD_B,
    MEMBER_A,
    MEMBER_A2,
    MEMBER_B,
)
from tests.genutil import (
    FAST_POLLING,
    eventually,
    imagine,
    is_accepted,
    result_of,
    task_id_of,
    wait_result,
)
from tests.helpers import answer_text

MANY = {"user_running": 200, "daily_quota": 1000}
FINISHED = (TaskState.DELIVERED, TaskState.FAILED)


async def accept(harness, **kwargs) -> int:
    text = await answer_text(await imagine(harness, **kwargs))
    assert is_accepted(text), text
    return task_id_of(text)


async def all_finished(harness, ids: list[int], timeout: float = 60) -> list:
    async def check():
        tasks = [await harness.bot.store.tasks.get(i) for i in ids]
        return tasks if all(t.state in FINISHED for t in tasks) else None

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (tasks := await check()) is None:
        assert loop.time() < deadline, "tasks left unfinished"
        await asyncio.sleep(0.05)
    return tasks


@pytest.mark.slow
async def test_hundred_generations_under_service_faults_all_end_accounted_for(harness_factory):
    h = await harness_factory(
        miaohua={**FAST_POLLING, "account_concurrency": 8},
        limits=MANY,
        emulator={"seed": 11},
    )
    # A hundred results and status messages in one channel: Discord's limits with windows a
    # tenth as long, or the channel's 5 messages per 5 s alone would take minutes.
    h.fake.rate_limits.scale = 0.1
    faults = h.emu.state.settings.faults
    faults.error_rate = 0.2
    faults.latency_spike_rate = 0.05
    faults.latency_spike = 0.3
    faults.malformed_rate = 0.05
    faults.token_ttl = 1.0
    users = [MEMBER_A, MEMBER_A2, ADMIN_A]
    ids = []
    for i in range(100):
        for _attempt in range(20):
            text = await answer_text(
                await imagine(h, prompt=f"fault run {i}", user_id=users[i % 3], count=1)
            )
            if is_accepted(text):
                ids.append(task_id_of(text))
                break
            assert "not answering properly" in text, text  # a refusal must be explained
        else:
            raise AssertionError("could not get a request accepted")
    tasks = await all_finished(h, ids, timeout=120)
    assert len(tasks) == 100
    for task in tasks:
        if task.state == TaskState.DELIVERED:
            assert result_of(h, task.id), f"task {task.id} marked delivered without a message"
        else:
            assert task.error, f"task {task.id} failed without a reason"
            # Told after the task is marked failed, at the pace of the channel's rate limit.
            await eventually(
                lambda task=task: any(
                    f"your task #{task.id} failed" in m["content"]
                    for m in h.fake.channel_messages(CH_A)
                ),
                timeout=60,
            )
    delivered = sum(t.state == TaskState.DELIVERED for t in tasks)
    assert delivered >= 50, f"only {delivered} of 100 delivered"
    assert not h.bot.is_closed()


@pytest.mark.slow
async def test_rate_limits_and_server_errors_on_posts_and_edits_are_retried(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING)
    h.fake.fail("POST", rf"/channels/{CH_A}/messages", 429, times=2, retry_after=0.3)
    h.fake.fail("PATCH", rf"/channels/{CH_A}/messages/\d+", 429, times=1, retry_after=0.2)
    h.fake.fail("POST", rf"/channels/{CH_A}/messages", 500, times=1)
    h.fake.fail("PATCH", rf"/channels/{CH_A}/messages/\d+", 500, times=1)
    task_id = await accept(h)
    await wait_result(h, task_id, timeout=20)
    await all_finished(h, [task_id])
    assert len(result_of(h, task_id)) == 1
    posts = [r for r in h.fake.requests if r.path == f"/channels/{CH_A}/messages"]
    assert {429, 500} <= {r.status for r in posts}

    def edit_statuses() -> set[int]:
        return {
            r.status
            for r in h.fake.requests
            if r.method == "PATCH" and r.path.startswith(f"/channels/{CH_A}/")
        }

    # The status message's final edit comes within its 2-second throttle, retried.
    await eventually(lambda: {429, 500, 200} <= edit_statuses(), timeout=15)


async def test_closed_dms_keep_the_result_for_status_to_repost(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING)
    h.fake.add_member(GUILD_A, 3999, "closed", dm_closed=True)
    h.fake.fail("POST", rf"/channels/{CH_A}/messages", 404, times=1000)
    task_id = await accept(h, user_id=3999)
    await eventually(lambda: any(r.status == 403 for r in h.fake.requests), timeout=10)
    task = await h.bot.store.tasks.get(task_id)
    assert task.state == TaskState.DONE and task.images  # kept, not lost
    h.fake.failures.clear()
    ix = await h.fake.slash(
        "status", options={"task": task_id}, user_id=3999, guild_id=GUILD_A, channel_id=CH_A
    )
    await answer_text(ix)
    await wait_result(h, task_id)
    for _ in range(100):
        task = await h.bot.store.tasks.get(task_id)
        if task.state == TaskState.DELIVERED:
            break
        await asyncio.sleep(0.05)
    assert task.state == TaskState.DELIVERED
    assert len(result_of(h, task_id)) == 1


HOSTILE = (
    "@everyone @here <@&4001> <@3003> **bold** __u__ `code` ' OR 1=1; DROP TABLE tasks;-- "
    "\u202eevil\u202c \u200bzero\u200dwidth \x07bell\x00nul\nnewline 猫"
)


async def test_hostile_prompts_are_cleaned_stored_verbatim_and_never_ping(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING)
    task_id = await accept(h, prompt=HOSTILE)
    message = await wait_result(h, task_id)
    task = await h.bot.store.tasks.get(task_id)
    for bad in ("\u202e", "\u200b", "\x07", "\x00", "\n"):
        assert bad not in task.prompt
    assert "DROP TABLE tasks" in task.prompt and "猫" in task.prompt
    assert await h.bot.store.tasks.get(1) is not None  # the table is still there
    assert message["mentions"] == [] or all(u["id"] == str(MEMBER_A) for u in message["mentions"])
    for request in h.fake.requests:
        if request.method in ("POST", "PATCH") and request.json and "content" in request.json:
            mentions = request.json.get("allowed_mentions")
            assert mentions is not None, f"{request.method} {request.path} without allowed_mentions"
            assert "everyone" not in mentions.get("parse", []), request.path
            assert "roles" not in mentions.get("parse", []), request.path
            assert not mentions.get("roles")


async def test_invisible_characters_do_not_hide_blocked_words(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING)
    await h.bot.store.settings.update(GUILD_A, blocked_words=["forbidden"])
    for prompt in ("for\u200bbidden art", "FOR\u00adBIDDEN", "ｆｏｒｂｉｄｄｅｎ"):
        text = await answer_text(await imagine(h, prompt=prompt))
        assert "blocked word" in text, (prompt, text)
    text = await answer_text(await imagine(h, prompt="\u200b\u200d\x07"))
    assert "prompt is empty" in text


async def test_no_secret_reaches_logs_database_or_discord(harness_factory, caplog):
    caplog.set_level(logging.DEBUG)
    h = await harness_factory(miaohua=FAST_POLLING)
    # A full session: account set through the modal, generation, training, faults.
    ix = await h.fake.slash(
        "account", subcommand="set", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
    )
    await ix.response()
    done = await h.fake.submit_modal(
        "account:set",
        {"email": ACCOUNTS[GUILD_A][0], "password": ACCOUNTS[GUILD_A][1]},
        user_id=ADMIN_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
    )
    assert "saved" in await answer_text(done)
    ok = await accept(h)
    await wait_result(h, ok)
    h.emu.state.settings.faults.error_rate = 0.3
    h.emu.expire_tokens()
    failing = await accept(h, prompt="under faults")
    await all_finished(h, [failing])
    h.emu.state.settings.faults.error_rate = 0.0
    from tests.test_training import images, train, wait_state

    await train(h, attachments=images(h, 3))
    await wait_state(h, 1, "done", "failed", timeout=20)
    await h.stop()

    secrets = [DISCORD_TOKEN, *(pw for _, pw in ACCOUNTS.values())]
    secrets += list(h.emu.state.tokens)  # every Miaohua token the service issued
    assert len(secrets) > 4
    logs = caplog.text
    db_bytes = b"".join(
        p.read_bytes() for p in Path(h.settings.storage.path).parent.glob("bot.sqlite3*")
    )
    sent = " ".join(
        repr(r.json) + repr([f[0] for f in r.files]) for r in h.fake.requests if r.json or r.files
    )
    for secret in secrets:
        assert secret not in logs, "a secret reached the log"
        assert secret.encode() not in db_bytes, "a secret reached the database in plain text"
        assert secret not in sent, "a secret was sent to Discord"
    await h.start()


async def test_guild_b_cannot_touch_guild_a_by_id_button_or_reaction(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING)
    task_id = await accept(h)
    message = await wait_result(h, task_id)
    # /status by id
    ix = await h.fake.slash(
        "status", options={"task": task_id}, user_id=ADMIN_B, guild_id=GUILD_B, channel_id=CH_B
    )
    assert "not found" in (await answer_text(ix)).lower()
    # buttons on A's message clicked from B
    for custom_id in (
        f"mh:rerun:{task_id}",
        f"mh:remix:{task_id}",
        f"mh:del:{task_id}",
        f"mh:var:{task_id}:0",
    ):
        ix = await h.fake.click(
            message, custom_id, user_id=ADMIN_B, guild_id=GUILD_B, channel_id=CH_B
        )
        await answer_text(ix)
    # reactions on A's message from a member of B
    for emoji in ("🔁", "🔂", "❌", "✉️"):
        await h.fake.react(message, emoji, user_id=MEMBER_B, guild_id=GUILD_B)
    await h.settled()
    tasks_b = await h.bot.store.tasks.recent(GUILD_B, None, 50)
    assert tasks_b == []
    assert h.fake.message(int(message["id"])) is not None  # not deleted
    assert h.fake.dm_messages(MEMBER_B) == []
    assert h.emu.state.calls["task_submit"] == 1


async def test_guild_b_cannot_train_on_guild_a_datasets(harness):
    from tests.test_training import images, train, wait_state

    await train(harness, attachments=images(harness, 3))
    training = await wait_state(harness, 1, "done", timeout=20)
    dataset_id = training.dataset_ids[0]
    ix = await harness.fake.slash(
        "train",
        options={"name": "Stolen", "datasets": str(dataset_id)},
        user_id=ADMIN_B,
        guild_id=GUILD_B,
        channel_id=CH_B,
    )
    text = await answer_text(ix)
    assert "Stolen" not in [t.name for t in await harness.bot.store.trainings.recent(GUILD_B)]
    assert str(dataset_id) in text or "dataset" in text.lower()
    choices = await harness.fake.autocomplete(
        "imagine", focused="model", options={"prompt": "x", "model": ""},
        user_id=MEMBER_B, guild_id=GUILD_B, channel_id=CH_B,
    )  # fmt: skip
    assert training.model_name not in [c["value"] for c in choices]


@pytest.mark.parametrize(
    ("command", "subcommand", "options"),
    [
        ("account", "set", {}),
        ("account", "status", {}),
        ("account", "remove", {}),
        ("settings", "show", {}),
        ("settings", "defaults", {"count": 2}),
        ("settings", "limits", {"daily_quota": 1}),
        ("settings", "channels", {"action": "clear"}),
        ("settings", "blocked-words", {"action": "clear"}),
        ("datasets", None, {}),
    ],
)
async def test_admin_commands_refuse_members(harness, command, subcommand, options):
    ix = await harness.fake.slash(
        command, subcommand=subcommand, options=options,
        user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A,
    )  # fmt: skip
    text = await answer_text(ix)
    assert "Manage Server" in text or "not allowed" in text or "permission" in text.lower(), text
    assert (await harness.bot.store.settings.get(GUILD_A)).daily_quota is None
    assert await harness.bot.store.accounts.get(GUILD_A) is not None


@pytest.mark.parametrize("command", ["imagine", "status", "models", "datasets", "train"])
async def test_commands_in_dms_answer_servers_only(harness, command):
    options = {"imagine": {"prompt": "a cat"}, "train": {"name": "Dm Style"}}.get(command, {})
    ix = await harness.fake.slash(
        command, options=options, user_id=MEMBER_A, guild_id=None, channel_id=9999
    )
    assert "servers only" in await answer_text(ix)


async def test_tasks_resumed_after_a_key_change_fail_with_a_clear_reason(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING)
    task = await h.bot.store.tasks.create(
        guild_id=GUILD_A, channel_id=CH_A, user_id=MEMBER_A, kind="t2i",
        model="Artist_V0.1.3", prompt="left in the queue", count=1, scale=7, size="512x512",
    )  # fmt: skip
    await h.stop()
    security = h.settings.security.model_copy(update={"secret_key": None})
    h.settings = h.settings.model_copy(update={"security": security})
    await h.start()
    message = await h.fake.wait_for_message(
        CH_A, lambda m: f"your task #{task.id} failed" in (m["content"] or "")
    )
    assert "/account set" in message["content"]
    failed = await h.bot.store.tasks.get(task.id)
    assert failed.state == TaskState.FAILED and failed.error == "account_invalid"
