"""Member preferences end to end: /preferences, their place among defaults, delivery by DM."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.emulator.forms import generation_form as emulator_form
from bot.i18n import t
from bot.preferences import usable_preferences
from bot.store import MemberPreferences, Store, TaskState
from bot.v1b import GenerationForm
from tests.conftest import (
    ADMIN_A,
    CH_A,
    GUILD_A,
    GUILD_B,
    MEMBER_A,
    MEMBER_A2,
    MEMBER_B,
    Harness,
)
from tests.genutil import (
    FAST_POLLING,
    eventually,
    imagine,
    is_accepted,
    is_result_of,
    result_of,
    task_id_of,
    text_of,
    wait_result,
)
from tests.helpers import EPHEMERAL, answer, answer_text, is_ephemeral, message_text

UNSET = t("preferences.unset", "en-US")


@pytest.fixture
async def gen(harness_factory) -> Harness:
    """A harness that polls the emulator quickly."""
    return await harness_factory(miaohua=FAST_POLLING)


async def prefs(
    h: Harness,
    subcommand: str,
    *,
    user_id: int = MEMBER_A,
    guild_id: int = GUILD_A,
    locale: str = "en-US",
    **options: Any,
) -> dict[str, Any]:
    """Run a /preferences subcommand; return its (private) answer."""
    ix = await h.fake.slash(
        "preferences",
        subcommand=subcommand,
        user_id=user_id,
        guild_id=guild_id,
        channel_id=CH_A if guild_id == GUILD_A else 2003,
        options=options,
        locale=locale,
    )
    body = await answer(ix)
    assert is_ephemeral(ix)
    return body


def fields(body: dict[str, Any]) -> dict[str, str]:
    """The answer's embed fields, name -> value."""
    data = body.get("data", body)
    (embed,) = data["embeds"]
    return {f["name"]: f["value"] for f in embed["fields"]}


async def accepted(ix) -> tuple[int, str]:
    """The task id of an accepted request and its answer (its public status)."""
    text = await answer_text(ix)
    assert is_accepted(text), text
    return task_id_of(text), text


async def private_note(ix) -> str:
    """The private follow-up a member gets beside the public answer (preferences set aside)."""
    body = await ix.wait_for(lambda kind, _: kind == "followup", 10)
    assert (body.get("flags") or 0) & EPHEMERAL, body
    return message_text(body)


async def delivered(h: Harness, task_id: int, timeout: float = 10.0):
    """Wait until the task is marked delivered; return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (task := await h.bot.store.tasks.get(task_id)).state != TaskState.DELIVERED:
        assert loop.time() < deadline, task.state
        await asyncio.sleep(0.02)
    return task


def status_text(h: Harness, task_id: int) -> str:
    """The current text of a task's status message in the channel."""
    for message in h.fake.channel_messages(CH_A):
        if f"#{task_id} " in message["content"] and not message.get("components"):
            return message["content"]
    return ""


# Which preferences still apply


def test_preferences_the_form_no_longer_offers_are_set_aside_and_reported_when_used():
    form = GenerationForm.model_validate(emulator_form(["A", "B"]))
    stored = MemberPreferences(
        GUILD_A, MEMBER_A, model="gone", size="333x333", count=12, negative_prompt="x"
    )
    usable, stale = usable_preferences(form, ["mine"], stored)
    assert (usable.model, usable.size, usable.count, usable.negative_prompt) == (
        None,
        None,
        None,
        "x",
    )
    assert [(s.name, s.value) for s in stale] == [
        ("model", "gone"),
        ("size", "333x333"),
        ("count", "12"),
    ]
    # Given with the command, they changed nothing: set aside but not reported.
    _, stale = usable_preferences(form, [], stored, settled={"model", "size", "count"})
    assert stale == ()
    # A trained model of the guild and the form's values are kept.
    fine = MemberPreferences(GUILD_A, MEMBER_A, model="mine", size="640x640", count=8)
    assert usable_preferences(form, ["mine"], fine) == (fine, ())


# /preferences set, show, clear


async def test_the_store_keeps_preferences_per_member_and_server(tmp_path):
    async with await Store.open(tmp_path / "prefs.sqlite3") as store:
        repo = store.preferences
        assert (await repo.get(GUILD_A, MEMBER_A)).empty
        await repo.update(GUILD_A, MEMBER_A, model="m", count=2, delivery="dm")
        cleared = await repo.update(GUILD_A, MEMBER_A, model=None)
        assert (cleared.model, cleared.count, cleared.delivery) == (None, 2, "dm")
        assert (await repo.get(GUILD_B, MEMBER_A)).empty
        with pytest.raises(ValueError, match="scale"):
            await repo.update(GUILD_A, MEMBER_A, scale=3)
        with pytest.raises(ValueError, match="delivery"):
            await repo.update(GUILD_A, MEMBER_A, delivery="pigeon")
        assert await repo.clear(GUILD_A, MEMBER_A)
        assert not await repo.clear(GUILD_A, MEMBER_A)


async def test_set_show_and_clear_round_trip_and_survive_a_restart(gen):
    body = await prefs(
        gen,
        "set",
        model="Watercolor_V1",
        size="1:1 640x640",
        count=3,
        negative_prompt="  blurry  ",
        delivery="dm",
    )
    assert t("preferences.saved", "en-US") in text_of(body.get("data", body))
    assert fields(body) == {
        "Model": "Watercolor\\_V1",  # shown literally: markdown escaped
        "Size": "640x640",
        "Images": "3",
        "Negative prompt": "blurry",
        "Results": "by direct message",
    }
    await gen.restart()
    shown = fields(await prefs(gen, "show"))
    assert shown["Model"] == "Watercolor\\_V1" and shown["Results"] == "by direct message"
    # Another member, and the same member in another server, have none.
    assert set(fields(await prefs(gen, "show", user_id=MEMBER_A2)).values()) == {UNSET}
    assert set(fields(await prefs(gen, "show", user_id=MEMBER_B, guild_id=GUILD_B)).values()) == {
        UNSET
    }
    # A single dash clears the negative prompt; clearing one preference keeps the others.
    assert fields(await prefs(gen, "set", negative_prompt="-"))["Negative prompt"] == UNSET
    after = fields(await prefs(gen, "clear", preference="model"))
    assert after["Model"] == UNSET and after["Size"] == "640x640"
    assert set(fields(await prefs(gen, "clear")).values()) == {UNSET}
    await gen.restart()
    assert set(fields(await prefs(gen, "show")).values()) == {UNSET}
    stored = await gen.bot.store.preferences.get(GUILD_A, MEMBER_A)
    assert stored.empty


async def test_set_without_options_says_what_can_be_set(gen):
    body = await prefs(gen, "set")
    assert text_of(body.get("data", body)) == t("preferences.nothing_to_set", "en-US")
    assert (await gen.bot.store.preferences.get(GUILD_A, MEMBER_A)).empty


@pytest.mark.parametrize(
    ("options", "key", "params"),
    [
        ({"model": "NoSuchModel"}, "options.bad_model", {"model": "NoSuchModel"}),
        ({"count": 9}, "options.bad_count", {"min": 1, "max": 8}),
        ({"count": 0}, "options.bad_count", {"min": 1, "max": 8}),
    ],
)
async def test_invalid_values_are_refused_like_imagine_refuses_them(gen, options, key, params):
    body = await prefs(gen, "set", delivery="dm", **options)
    assert text_of(body.get("data", body)) == t(key, "en-US", **params)
    assert (await gen.bot.store.preferences.get(GUILD_A, MEMBER_A)).empty  # nothing saved


async def test_a_bad_size_is_refused_with_the_sizes_offered(gen):
    body = await prefs(gen, "set", size="123x456")
    text = text_of(body.get("data", body))
    assert "123x456" in text and "512x512" in text


async def test_model_and_size_autocomplete_from_the_form(gen):
    async def choices(focused: str, typed: str) -> list[str]:
        found = await gen.fake.autocomplete(
            "preferences",
            subcommand="set",
            focused=focused,
            options={focused: typed},
            user_id=MEMBER_A,
            guild_id=GUILD_A,
            channel_id=CH_A,
        )
        return [c["value"] for c in found]

    assert await choices("model", "water") == ["Watercolor_V1"]
    assert "640x640" in await choices("size", "640")


# Precedence


async def test_explicit_options_beat_preferences_which_beat_server_defaults(gen):
    await gen.bot.store.settings.update(
        GUILD_A, model="Watercolor_V1", count=3, negative_prompt="server-neg", user_running=5
    )
    await prefs(gen, "set", model="Artist v0.3.0 Beta", count=2, negative_prompt="my-neg")

    mine, _ = await accepted(await imagine(gen))
    explicit, _ = await accepted(
        await imagine(gen, model="Artist_V0.1.3", count=1, negative_prompt="explicit-neg")
    )
    theirs, _ = await accepted(await imagine(gen, user_id=MEMBER_A2))
    tasks = {i: await gen.bot.store.tasks.get(i) for i in (mine, explicit, theirs)}
    got = {i: (task.model, task.count, task.negative_prompt) for i, task in tasks.items()}
    assert got == {
        mine: ("Artist v0.3.0 Beta", 2, "my-neg"),
        explicit: ("Artist_V0.1.3", 1, "explicit-neg"),
        theirs: ("Watercolor_V1", 3, "server-neg"),
    }
    assert all(task.delivery == "channel" for task in tasks.values())


async def test_image_to_image_from_a_message_uses_the_preferences_too(gen):
    source_id, _ = await accepted(await imagine(gen, count=1))
    source = await wait_result(gen, source_id)
    await prefs(
        gen, "set", user_id=MEMBER_A2, model="Watercolor_V1", count=2, negative_prompt="grainy"
    )
    ix = await gen.fake.context_menu(
        "Use as init image", user_id=MEMBER_A2, guild_id=GUILD_A, channel_id=CH_A,
        target_message=source,
    )  # fmt: skip
    await ix.response()
    submit = await gen.fake.submit_modal(
        "generate:init",
        {"prompt": "as a watercolor", "negative_prompt": ""},
        user_id=MEMBER_A2,
        guild_id=GUILD_A,
        channel_id=CH_A,
    )
    task = await gen.bot.store.tasks.get((await accepted(submit))[0])
    assert (task.kind, task.model, task.count, task.negative_prompt) == (
        "i2i",
        "Watercolor_V1",
        2,
        "grainy",
    )


async def test_a_preference_no_longer_offered_falls_back_and_is_pointed_out(gen):
    await gen.bot.store.models.add(guild_id=GUILD_A, model_name="lora-fox-7")
    await prefs(gen, "set", model="lora-fox-7", count=2)
    assert await gen.bot.store.models.delete(GUILD_A, "lora-fox-7")

    ix = await imagine(gen)
    task_id, _ = await accepted(ix)
    task = await gen.bot.store.tasks.get(task_id)
    assert (task.model, task.count) == ("Artist_V0.1.3", 2)  # the form's default, the rest kept
    note = await private_note(ix)
    assert note == t("preferences.set_aside.model", "en-US", value="lora-fox-7")
    # Only a preference that would have been used is pointed out.
    ix = await imagine(gen, model="Watercolor_V1")
    _, text = await accepted(ix)
    await gen.idle()
    assert "lora-fox-7" not in text and [kind for kind, _ in ix.log] == ["callback"]
    shown = fields(await prefs(gen, "show"))
    assert shown["Model"] == f"lora-fox-7 {t('preferences.not_offered', 'en-US')}"
    assert shown["Images"] == "2"


# Delivery by direct message


async def test_dm_delivery_sends_the_result_with_buttons_and_notes_it_in_the_channel(gen):
    await prefs(gen, "set", delivery="dm")
    task_id, text = await accepted(await imagine(gen, count=2))
    assert text == t("generate.accepted_dm", "en-US", id=task_id)

    (dm,) = await eventually(lambda: gen.fake.dm_messages(MEMBER_A))
    assert dm["embeds"][0]["title"] == f"Task #{task_id}" and len(dm["attachments"]) == 2
    assert len(dm["embeds"]) == 2  # both images, as one gallery
    assert f"<#{CH_A}>" in dm["content"] and "Guild A" in dm["content"]
    # Reactions do nothing in DMs, so the footer does not offer them.
    assert dm["embeds"][0]["footer"]["text"] == f"Task #{task_id} · t2i"
    assert is_result_of(dm, task_id)
    task = await delivered(gen, task_id)
    assert task.delivery == "dm" and task.result_message_id == int(dm["id"])
    assert result_of(gen, task_id) == []  # nothing public but the note
    note = t("status.line.sent_by_dm", "en-US", id=task_id, user=f"<@{MEMBER_A}>")
    await eventually(lambda: note in status_text(gen, task_id))
    # The status message names the member without pinging them.
    edits = [r for r in gen.fake.requests if r.method == "PATCH" and f"/{CH_A}/" in r.path]
    assert edits and all(r.json["allowed_mentions"]["parse"] == [] for r in edits)
    assert all("users" not in r.json["allowed_mentions"] for r in edits)
    # /status finds it in the DMs; its list, which only the member reads, links it there.
    dm_link = f"https://discord.com/channels/@me/{dm['channel_id']}/{dm['id']}"
    listing = await answer_text(
        await gen.fake.slash("status", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A)
    )
    assert f"#{task_id}" in listing and f"]({dm_link})" in listing
    # A moderator's list of the server's tasks has no link that would not open for them.
    staff = await answer_text(
        await gen.fake.slash("status", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A)
    )
    assert f"#{task_id}" in staff and dm["id"] not in staff
    one = await answer_text(
        await gen.fake.slash(
            "status",
            user_id=MEMBER_A,
            guild_id=GUILD_A,
            channel_id=CH_A,
            options={"task": task_id},
        )
    )
    assert f"https://discord.com/channels/@me/{dm['channel_id']}/{dm['id']}" in one


async def test_buttons_in_direct_messages_work_for_the_tasks_guild(gen):
    await prefs(gen, "set", delivery="dm")
    first, _ = await accepted(await imagine(gen, count=1))
    (dm,) = await eventually(lambda: gen.fake.dm_messages(MEMBER_A))
    dm_channel = int(dm["channel_id"])

    ix = await gen.fake.click(
        dm, f"mh:rerun:{first}", user_id=MEMBER_A, guild_id=None, channel_id=dm_channel
    )
    rerun, text = await accepted(ix)
    assert text == t("generate.accepted_dm", "en-US", id=rerun)
    task = await gen.bot.store.tasks.get(rerun)
    assert (task.guild_id, task.channel_id, task.parent_id) == (GUILD_A, CH_A, first)
    assert task.delivery == "dm"  # the member's preference holds for reruns too
    second = await gen.fake.wait_for_message(dm_channel, lambda m: is_result_of(m, rerun))
    source = {f["name"]: f["value"] for f in second["embeds"][0]["fields"]}["Source"]
    assert source == f"rerun of #{first}"  # no link: a DM result has none that works for all

    ix = await gen.fake.click(
        dm, f"mh:del:{first}", user_id=MEMBER_A, guild_id=None, channel_id=dm_channel
    )
    assert await answer_text(ix) == t("result.deleted", "en-US", id=first)
    assert dm["id"] not in [m["id"] for m in gen.fake.dm_messages(MEMBER_A)]


async def test_a_dm_button_of_a_member_who_left_says_so(gen):
    await prefs(gen, "set", delivery="dm")
    task_id, _ = await accepted(await imagine(gen, count=1))
    (dm,) = await eventually(lambda: gen.fake.dm_messages(MEMBER_A))
    await delivered(gen, task_id)
    del gen.fake.world.guild(GUILD_A).members[MEMBER_A]

    ix = await gen.fake.click(
        dm, f"mh:rerun:{task_id}", user_id=MEMBER_A, guild_id=None, channel_id=int(dm["channel_id"])
    )
    assert await answer_text(ix) == t("result.dm_not_member", "en-US", id=task_id)
    assert await gen.bot.store.tasks.get(task_id + 1) is None  # nothing was queued


async def test_closed_dms_send_the_result_to_the_channel_and_say_so(gen):
    gen.fake.world.dm_closed.add(MEMBER_A)
    await prefs(gen, "set", delivery="dm")
    task_id, _ = await accepted(await imagine(gen, count=1))

    result = await wait_result(gen, task_id)
    assert result["content"] == f"<@{MEMBER_A}> " + t("delivery.dm_refused", "en-US")
    assert result["attachments"] and result["embeds"][0]["title"] == f"Task #{task_id}"
    assert "🔁" in result["embeds"][0]["footer"]["text"]  # reactions work here
    task = await delivered(gen, task_id)
    assert task.result_message_id == int(result["id"])
    assert gen.fake.dm_messages(MEMBER_A) == []
    # The status message links to the result in the channel.
    await eventually(lambda: result["id"] in status_text(gen, task_id))
    refused = [r for r in gen.fake.requests if r.method == "POST" and r.status == 403]
    assert refused, "the DM was never tried"


async def test_a_dm_task_pending_across_a_restart_still_goes_by_dm(gen):
    await prefs(gen, "set", delivery="dm")
    gen.emu.state.settings.faults.busy_above = 0  # the account takes no task: it stays queued
    task_id, _ = await accepted(await imagine(gen, count=1))
    await gen.stop()
    async with await Store.open(gen.settings.storage.database) as store:
        pending = await store.tasks.get(task_id)
    assert pending.state == TaskState.QUEUED and pending.delivery == "dm"

    gen.emu.state.settings.faults.busy_above = None
    await gen.start()
    (dm,) = await eventually(lambda: gen.fake.dm_messages(MEMBER_A), timeout=15)
    assert is_result_of(dm, task_id)
    assert (await delivered(gen, task_id)).result_message_id == int(dm["id"])
    assert result_of(gen, task_id) == []


# Chinese


async def test_chinese_speakers_get_chinese_preferences_and_dm_results(gen):
    zh = "zh-CN"
    body = await prefs(gen, "set", delivery="dm", locale=zh)
    assert fields(body)[t("preferences.field.delivery", zh)] == "私信发送"
    assert fields(await prefs(gen, "show", locale=zh))["模型"] == "未设置"
    ix = await gen.fake.slash(
        "imagine",
        user_id=MEMBER_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        options={"prompt": "雪中的狐狸", "count": 1},
        locale=zh,
    )
    text = await answer_text(ix)
    task_id = int(text.split("#", 1)[1].split("。", 1)[0])
    assert text == t("generate.accepted_dm", zh, id=task_id)
    (dm,) = await eventually(lambda: gen.fake.dm_messages(MEMBER_A))
    assert dm["content"].startswith(f"这是任务 #{task_id} 的结果")
    note = t("status.line.sent_by_dm", zh, id=task_id, user=f"<@{MEMBER_A}>")
    await eventually(lambda: note in status_text(gen, task_id))
