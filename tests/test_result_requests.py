"""The requests that post a result, pinned: what members see cannot drift.

Each test drives a real delivery and compares the body Discord received (the multipart
`payload_json`, in its key order) with the one the bot has always sent, whichever way it
builds the request; then checks what the bot recorded and that the result still works.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import discord
import pytest

from bot.discord_jobs.buttons import (
    MAX_VARIATIONS,
    DeleteButton,
    RemixButton,
    RerunButton,
    VariationButton,
    result_components,
)
from bot.i18n import t
from bot.store import Task, TaskState
from fakediscord.recording import RecordedRequest
from tests.conftest import CH_A, GUILD_A, MEMBER_A, MEMBER_A2, Harness
from tests.genutil import (
    FAST_POLLING,
    eventually,
    imagine,
    set_preferences,
    task_id_of,
    wait_result,
)
from tests.helpers import answer_text

FOOTER = "Task #{} · t2i · 🔁 rerun · 🔂 same seed · ✉️ originals by DM · ❌ delete"
MODEL = {"inline": True, "name": "Model", "value": "Artist\\_V0.1.3"}
SIZE = {"inline": True, "name": "Size", "value": "512x512"}
TIME = {"inline": True, "name": "Time", "value": "<time>"}


def buttons(task_id: int, images: int) -> list[dict[str, Any]]:
    """The buttons under a result, as discord.py's View of them has always written them."""
    top = [
        ("Rerun", f"mh:rerun:{task_id}", 1, "🔁"),
        ("Remix", f"mh:remix:{task_id}", 1, "🎨"),
        ("Delete", f"mh:del:{task_id}", 4, "❌"),
    ]
    return [
        {
            "type": 1,
            "components": [
                {"type": 2, "style": style, "disabled": False, "label": label,
                 "custom_id": custom_id, "emoji": {"id": None, "name": emoji}}
                for label, custom_id, style, emoji in top
            ],
        },
        {
            "type": 1,
            "components": [
                {"type": 2, "style": 2, "disabled": False, "label": f"V{i + 1}",
                 "custom_id": f"mh:var:{task_id}:{i}"}
                for i in range(images)
            ],
        },
    ]  # fmt: skip


@pytest.fixture
async def gen(harness_factory) -> Harness:
    """A harness that polls the emulator quickly."""
    return await harness_factory(miaohua=FAST_POLLING)


def result_post(h: Harness, channel_id: int) -> RecordedRequest:
    """The one accepted result post (a message with files) in a channel."""
    path = f"/channels/{channel_id}/messages"
    (post,) = [
        r
        for r in h.fake.requests
        if r.method == "POST" and r.path == path and r.files and r.status == 200
    ]
    return post


def body_of(h: Harness, post: RecordedRequest) -> str:
    """The post's body as JSON in its key order, with what changes from run to run put
    aside: the emulator's address and the task's generation time."""
    body = post.json
    for embed in body["embeds"]:
        for field in embed.get("fields", []):
            if field["name"] == "Time":
                field["value"] = "<time>"
    return json.dumps(body, ensure_ascii=False).replace(h.emu.root_url, "<emu>")


def files_of(post: RecordedRequest) -> list[tuple[str, str]]:
    return [(name, content_type) for name, _, content_type in post.files]


def reaction_puts(h: Harness, channel_id: int) -> list[str]:
    prefix = f"/channels/{channel_id}/messages/"
    return [r.path for r in h.fake.requests if r.method == "PUT" and r.path.startswith(prefix)]


async def delivery_by_dm(h: Harness) -> None:
    await set_preferences(h, delivery="dm")


async def delivered(h: Harness, task_id: int) -> Task:
    """Wait until the task is recorded as delivered; return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while (task := await h.bot.store.tasks.get(task_id)).state != TaskState.DELIVERED:
        assert task.state != TaskState.FAILED and loop.time() < deadline, task.state
        await asyncio.sleep(0.02)
    return task


def one_image_embed(description: str, *, seed: int, footer: str) -> dict[str, Any]:
    """The embed of task 1's single-image result, as Discord receives it."""
    return {
        "footer": {"text": footer},
        "image": {"url": "attachment://task-1-1.jpg"},
        "fields": [
            MODEL,
            SIZE,
            {"inline": True, "name": "Seed", "value": str(seed)},
            {"inline": True, "name": "Images", "value": "1"},
            TIME,
        ],
        "flags": 0,
        "color": 7101671,
        "type": "rich",
        "description": description,
        "title": "Task #1",
    }


async def test_a_channel_result_is_posted_with_the_body_it_always_had(gen):
    ix = await imagine(gen, "a lighthouse at dusk", count=2, seed=77, negative_prompt="fog")
    task_id = task_id_of(await answer_text(ix))
    result = await wait_result(gen, task_id)
    gallery = "<emu>/images/cd613e30-d8f1-1adf-91b7-584a2265b1f5_00000.jpg"
    expected = {
        "embeds": [
            {
                "footer": {"text": FOOTER.format(1)},
                "image": {"url": "attachment://task-1-1.jpg"},
                "fields": [
                    {"inline": False, "name": "Negative prompt", "value": "fog"},
                    MODEL,
                    SIZE,
                    {"inline": True, "name": "Seed", "value": "77"},
                    {"inline": True, "name": "Images", "value": "2"},
                    TIME,
                ],
                "flags": 0,
                "color": 7101671,
                "type": "rich",
                "description": "a lighthouse at dusk",
                "url": gallery,
                "title": "Task #1",
            },
            {
                "image": {"url": "attachment://task-1-2.jpg"},
                "flags": 0,
                "color": 7101671,
                "type": "rich",
                "url": gallery,
            },
        ],
        "content": f"<@{MEMBER_A}>",
        "components": buttons(1, 2),
        "nonce": "mh1d",
        "enforce_nonce": True,
        "tts": False,
        "allowed_mentions": {"users": [MEMBER_A], "parse": []},
        "attachments": [
            {"id": 0, "filename": "task-1-1.jpg"},
            {"id": 1, "filename": "task-1-2.jpg"},
        ],
    }
    post = result_post(gen, CH_A)
    assert body_of(gen, post) == json.dumps(expected, ensure_ascii=False)
    octets = "application/octet-stream"
    assert files_of(post) == [("task-1-1.jpg", octets), ("task-1-2.jpg", octets)]
    # Recorded as posted where it is, linked from the status message; no reaction added.
    task = await delivered(gen, task_id)
    assert (task.result_message_id, task.delivery) == (int(result["id"]), "channel")
    link = f"https://discord.com/channels/{GUILD_A}/{CH_A}/{result['id']}"
    await gen.fake.wait_for_message(
        CH_A, lambda m: int(m["id"]) == task.status_message_id and link in m["content"]
    )
    await gen.idle()
    assert reaction_puts(gen, CH_A) == []  # `discord.rerun_reaction` is off by default
    # Its buttons are dispatched by their custom ids, with no view stored for the message.
    ix = await gen.fake.click(
        result, f"mh:var:{task_id}:1", user_id=MEMBER_A2, guild_id=GUILD_A, channel_id=CH_A
    )
    assert "Accepted as task #2" in await answer_text(ix)
    await wait_result(gen, 2)


async def test_a_dm_result_is_posted_with_the_body_it_always_had(gen):
    await delivery_by_dm(gen)
    task_id = task_id_of(await answer_text(await imagine(gen, "a quiet harbour", count=1, seed=5)))
    (dm,) = await eventually(lambda: gen.fake.dm_messages(MEMBER_A), timeout=15)
    expected = {
        "embeds": [one_image_embed("a quiet harbour", seed=5, footer="Task #1 · t2i")],
        "content": f"Your result of task #1, asked for in <#{CH_A}> on Guild A:",
        "components": buttons(1, 1),
        "nonce": "mh1dm",
        "enforce_nonce": True,
        "tts": False,
        "allowed_mentions": {"parse": []},
        "attachments": [{"id": 0, "filename": "task-1-1.jpg"}],
    }
    post = result_post(gen, int(dm["channel_id"]))
    assert body_of(gen, post) == json.dumps(expected, ensure_ascii=False)
    assert files_of(post) == [("task-1-1.jpg", "application/octet-stream")]
    task = await delivered(gen, task_id)
    assert (task.result_message_id, task.delivery) == (int(dm["id"]), "dm")
    await gen.idle()
    assert reaction_puts(gen, int(dm["channel_id"])) == []  # reactions work in channels only


async def test_a_result_the_channel_refuses_goes_by_dm_with_the_body_it_always_had(gen):
    task_id = task_id_of(await answer_text(await imagine(gen, "a red kite", count=1, seed=5)))
    await gen.fake.wait_for_message(CH_A, lambda m: f"#{task_id}" in m["content"])
    gen.fake.fail("POST", rf"/channels/{CH_A}/messages", 403)
    (dm,) = await eventually(lambda: gen.fake.dm_messages(MEMBER_A), timeout=15)
    post = result_post(gen, int(dm["channel_id"]))
    nonce = post.json["nonce"]
    assert nonce.isdigit()  # discord.py's random one: none was chosen for this post
    post.json["nonce"] = "<random>"
    expected = {
        "embeds": [one_image_embed("a red kite", seed=5, footer=FOOTER.format(1))],
        "content": None,
        "components": [],
        "nonce": "<random>",
        "enforce_nonce": True,
        "tts": False,
        "allowed_mentions": {"parse": []},
        "attachments": [{"id": 0, "filename": "task-1-1.jpg"}],
    }
    assert body_of(gen, post) == json.dumps(expected, ensure_ascii=False)
    task = await delivered(gen, task_id)
    assert (task.result_message_id, task.delivery) == (int(dm["id"]), "dm")


async def test_a_dm_result_refused_by_closed_dms_is_posted_with_the_body_it_always_had(gen):
    gen.fake.world.dm_closed.add(MEMBER_A)
    await delivery_by_dm(gen)
    task_id = task_id_of(await answer_text(await imagine(gen, "a grey heron", count=1, seed=6)))
    result = await wait_result(gen, task_id, timeout=15)
    expected = {
        "embeds": [one_image_embed("a grey heron", seed=6, footer=FOOTER.format(1))],
        "content": f"<@{MEMBER_A}> {t('delivery.dm_refused', 'en-US')}",
        "components": buttons(1, 1),
        "nonce": "mh1d",
        "enforce_nonce": True,
        "tts": False,
        "allowed_mentions": {"users": [MEMBER_A], "parse": []},
        "attachments": [{"id": 0, "filename": "task-1-1.jpg"}],
    }
    assert body_of(gen, result_post(gen, CH_A)) == json.dumps(expected, ensure_ascii=False)
    task = await delivered(gen, task_id)
    assert (task.result_message_id, task.delivery) == (int(result["id"]), "channel")


@pytest.mark.parametrize("locale", ["en-US", "zh-CN", None])
async def test_result_components_are_what_a_view_of_the_dynamic_buttons_renders(locale):
    for images in range(MAX_VARIATIONS + 2):
        view = discord.ui.View(timeout=None)
        view.add_item(RerunButton(42, t("result.button.rerun", locale)))
        view.add_item(RemixButton(42, t("result.button.remix", locale)))
        for index in range(min(images, MAX_VARIATIONS)):
            view.add_item(VariationButton(42, index))
        view.add_item(DeleteButton(42, t("result.button.delete", locale)))
        rendered = json.dumps(view.to_components(), ensure_ascii=False)
        assert json.dumps(result_components(42, images, locale), ensure_ascii=False) == rendered
