"""The Remix button: a form prefilled with a result's values, queued again with the edits."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from bot.discord_jobs import remix_form
from bot.discord_jobs.remix import RemixDraft
from bot.display import render
from bot.i18n import t
from bot.jobs import GenerationRequest, Limits
from bot.jobs.admission import utc_day
from bot.text import clean_text
from fakediscord.interactions import FakeInteraction
from tests.conftest import ADMIN_B, CH_A, CH_B, GUILD_A, GUILD_B, MEMBER_A, MEMBER_A2, Harness
from tests.genutil import FAST_POLLING, imagine, task_id_of, wait_result
from tests.helpers import answer_text, is_ephemeral

PARENT_PROMPT = "a lighthouse at dusk"
PARENT_NEGATIVE = "fog, blur"
# Within the form's 1,000 characters as typed, 1,080 once normalised (each ﷺ becomes 18).
EXPANDING = "\ufdfa" * 60


@pytest.fixture
async def gen(harness_factory):
    """A harness that polls quickly, with one delivered result of two images (task #1)."""
    h = await harness_factory(miaohua=FAST_POLLING)
    await h.bot.store.settings.update(GUILD_A, user_running=5)
    ix = await imagine(h, PARENT_PROMPT, negative_prompt=PARENT_NEGATIVE, count=2, seed=77)
    assert task_id_of(await answer_text(ix)) == 1
    h.result = await wait_result(h, 1)
    return h


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for row in message["components"] for c in row["components"]]


def text_inputs(modal: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The modal's text inputs by custom_id, wherever they sit in its component tree."""
    found: dict[str, dict[str, Any]] = {}

    def walk(component: dict[str, Any]) -> None:
        if component.get("type") == 4:
            found[component["custom_id"]] = component
        for child in component.get("components", []):
            walk(child)
        if "component" in component:
            walk(component["component"])

    for component in modal["components"]:
        walk(component)
    return found


async def open_form(
    h: Harness, task_id: int = 1, *, user_id: int = MEMBER_A2, locale: str = "en-US"
) -> dict[str, Any]:
    """Click Remix on a result; return the modal the bot answered with."""
    result = h.result if task_id == 1 else await wait_result(h, task_id)
    ix = await h.fake.click(
        result,
        f"mh:remix:{task_id}",
        user_id=user_id,
        guild_id=GUILD_A,
        channel_id=CH_A,
        locale=locale,
    )
    await ix.response()
    assert ix.modal is not None, await answer_text(ix)
    return ix.modal


async def submit(
    h: Harness, *, user_id: int = MEMBER_A2, locale: str = "en-US", **values: str
) -> FakeInteraction:
    return await h.fake.submit_modal(
        "remix", values, user_id=user_id, guild_id=GUILD_A, channel_id=CH_A, locale=locale
    )


async def task_ids(h: Harness) -> list[int]:
    return sorted(task.id for task in await h.bot.store.tasks.recent(GUILD_A, limit=50))


async def test_every_result_has_a_remix_button_beside_rerun(gen):
    rows = gen.result["components"]
    first = [c["custom_id"] for c in rows[0]["components"]]
    assert first == ["mh:rerun:1", "mh:remix:1", "mh:del:1"]
    (remix,) = [b for b in buttons(gen.result) if b["custom_id"] == "mh:remix:1"]
    assert remix["label"] == "Remix"
    # Eight images: still within Discord's five rows of five buttons.
    ix = await imagine(gen, "eight ships", count=8)
    eight = await wait_result(gen, task_id_of(await answer_text(ix)))
    assert len(eight["components"]) <= 5
    assert all(len(row["components"]) <= 5 for row in eight["components"])
    assert "mh:remix:2" in [b["custom_id"] for b in buttons(eight)]


async def test_the_form_is_prefilled_with_the_results_values(gen):
    modal = await open_form(gen)
    assert modal["title"] == t("remix.modal.title", "en-US", id=1)
    fields = text_inputs(modal)
    values = {name: field.get("value") for name, field in fields.items()}
    assert values == {
        "prompt": PARENT_PROMPT,
        "negative_prompt": PARENT_NEGATIVE,
        "count": "2",
        "seed": "77",
    }
    assert fields["prompt"]["required"] and fields["count"]["required"]
    assert not fields["negative_prompt"]["required"] and not fields["seed"]["required"]


async def test_a_remix_queues_the_edits_with_the_parents_other_options(gen):
    await open_form(gen)
    ix = await submit(
        gen, prompt="  a lighthouse at dawn ", negative_prompt="", count="1", seed="5"
    )
    text = await answer_text(ix)
    assert is_ephemeral(ix)
    assert text == t("generate.accepted", "en-US", id=2)
    parent, child = await gen.bot.store.tasks.get(1), await gen.bot.store.tasks.get(2)
    assert (child.parent_id, child.origin, child.user_id) == (1, "remix", MEMBER_A2)
    assert (child.prompt, child.negative_prompt, child.count, child.seed) == (
        "a lighthouse at dawn",
        "",
        1,
        5,
    )
    same = ("model", "size", "scale", "kind", "init_image_url", "channel_id", "style")
    assert [getattr(child, name) for name in same] == [getattr(parent, name) for name in same]
    result = await wait_result(gen, 2)
    assert result["content"] == f"<@{MEMBER_A2}>"
    embed = result["embeds"][0]
    (source,) = [f for f in embed["fields"] if f["name"] == t("result.parent", "en-US")]
    url = f"https://discord.com/channels/{GUILD_A}/{CH_A}/{gen.result['id']}"
    assert source["value"] == f"[{t('result.remix_of', 'en-US', id=1)}]({url})"
    assert embed["description"] == "a lighthouse at dawn"
    assert "mh:remix:2" in [b["custom_id"] for b in buttons(result)]


async def test_an_empty_seed_asks_for_a_random_one(gen):
    await open_form(gen)
    ix = await submit(gen, prompt=PARENT_PROMPT, count="2", seed=" ")
    child = await gen.bot.store.tasks.get(task_id_of(await answer_text(ix)))
    assert child.seed == -1 and child.origin == "remix"


@pytest.mark.parametrize(
    ("values", "key", "params"),
    [
        ({"count": "two"}, "remix.count_not_number", {"value": "two"}),
        ({"count": "99"}, "options.bad_count", {"min": 1, "max": 8}),
        ({"seed": "lucky"}, "remix.seed_not_number", {"value": "lucky"}),
        ({"seed": "-5"}, "options.bad_seed", {"min": 0, "max": 9_999_999}),
        ({"prompt": "\u200b\u200b"}, "generate.empty_prompt", {}),
        (
            {"negative_prompt": EXPANDING},
            "text.too_long.negative_prompt",
            {"length": len(clean_text(EXPANDING)), "limit": 1000},
        ),
    ],
)
async def test_a_bad_value_is_named_nothing_is_queued_and_the_edits_come_back(
    gen, values, key, params
):
    await open_form(gen)
    typed = {
        "prompt": "a lighthouse at dawn",
        "negative_prompt": PARENT_NEGATIVE,
        "count": "1",
        "seed": "5",
        **values,
    }
    ix = await submit(gen, **typed)
    text = await answer_text(ix)
    assert is_ephemeral(ix)
    reason = render(key, "en-US", **params)
    assert text == t("remix.refused", "en-US", reason=reason)
    assert await task_ids(gen) == [1]
    # "Edit again" opens the form with what the member typed, not the parent's values.
    message = ix.original()
    (again,) = buttons(message)
    assert again["label"] == t("remix.edit_again", "en-US")
    retry = await gen.fake.click(
        message, again["custom_id"], user_id=MEMBER_A2, guild_id=GUILD_A, channel_id=CH_A
    )
    await retry.response()
    reopened = {name: field.get("value") for name, field in text_inputs(retry.modal).items()}
    assert reopened == typed
    fixed = await submit(gen, prompt="a lighthouse at dawn", count="1", seed="5")
    assert await answer_text(fixed) == t("generate.accepted", "en-US", id=2)


@pytest.mark.parametrize(
    ("settings", "refusal"),
    [
        ({"blocked_words": ["dawn"]}, t("refused.blocked_word", "en-US", word="dawn")),
        ({"allowed_channels": [CH_A + 99]}, t("refused.channel_not_allowed", "en-US")),
        ({"daily_quota": 2}, "You reached today's limit of 2 images. "),
    ],
)
async def test_a_remix_passes_the_same_admission_as_a_command(gen, settings, refusal):
    await gen.bot.store.settings.update(GUILD_A, **settings)
    await gen.bot.store.usage.increment(GUILD_A, MEMBER_A2, utc_day(time.time()), 1)
    await open_form(gen)
    ix = await submit(gen, prompt="a lighthouse at dawn", count="2", seed="")
    assert (await answer_text(ix)).startswith(refusal)
    assert await task_ids(gen) == [1]


async def test_the_remix_button_works_after_a_restart(gen):
    await gen.restart()
    modal = await open_form(gen)
    assert text_inputs(modal)["prompt"]["value"] == PARENT_PROMPT
    ix = await submit(gen, prompt="a lighthouse in the rain", count="1", seed="")
    child_id = task_id_of(await answer_text(ix))
    await wait_result(gen, child_id)
    child = await gen.bot.store.tasks.get(child_id)
    assert (child.parent_id, child.origin, child.prompt) == (1, "remix", "a lighthouse in the rain")


async def test_chinese_speakers_get_a_chinese_form_and_result(gen):
    modal = await open_form(gen, locale="zh-CN")
    assert modal["title"] == "修改重绘任务 #1"
    labels = {name: field["label"] for name, field in text_inputs(modal).items()}
    assert labels == {
        "prompt": "提示词",
        "negative_prompt": "反向提示词（可选）",
        "count": "图片数量",
        "seed": "种子（留空或填 -1：随机）",
    }
    bad = await submit(gen, locale="zh-CN", prompt="海上灯塔", count="两张", seed="")
    assert await answer_text(bad) == t(
        "remix.refused", "zh-CN", reason=t("remix.count_not_number", "zh-CN", value="两张")
    )
    (again,) = buttons(bad.original())
    assert again["label"] == "继续修改"
    retry = await gen.fake.click(
        bad.original(),
        again["custom_id"],
        user_id=MEMBER_A2,
        guild_id=GUILD_A,
        channel_id=CH_A,
        locale="zh-CN",
    )
    assert (await retry.response())["data"]["title"] == "修改重绘任务 #1"
    ok = await submit(gen, locale="zh-CN", prompt="海上灯塔", count="1", seed="")
    assert await answer_text(ok) == t("generate.accepted", "zh-CN", id=2)
    result = await wait_result(gen, 2)
    (source,) = [f for f in result["embeds"][0]["fields"] if f["name"] == "来源"]
    assert source["value"].startswith("[修改重绘自 #1](")
    assert "修改重绘" in [b.get("label") for b in buttons(result)]


async def test_only_the_member_who_opened_the_form_can_submit_it(gen):
    await open_form(gen, user_id=MEMBER_A2)
    forged = await gen.fake.submit_modal(
        "remix",
        {"prompt": "charged to someone else", "count": "1"},
        user_id=MEMBER_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        shown_to=MEMBER_A2,
    )
    assert await answer_text(forged) == t("errors.modal_not_yours", "en-US")
    assert await task_ids(gen) == [1]


async def test_another_guild_cannot_remix_a_result(gen):
    ix = await gen.fake.click(
        gen.result, "mh:remix:1", user_id=ADMIN_B, guild_id=GUILD_B, channel_id=CH_B
    )
    assert await answer_text(ix) == t("result.not_found", "en-US", id=1)
    assert ix.modal is None


async def test_a_styled_result_is_remixed_with_the_members_words_in_the_same_style(gen):
    parent = await gen.bot.store.tasks.get(1)
    styled = GenerationRequest(
        guild_id=GUILD_A,
        channel_id=CH_A,
        user_id=MEMBER_A,
        locale="en-US",
        kind="t2i",
        model=parent.model,
        prompt="ink wash painting of a heron, monochrome",
        negative_prompt="",
        count=1,
        scale=parent.scale,
        seed=-1,
        size=parent.size,
        style="Ink",
        member_prompt="a heron",
    )
    task = await gen.bot.generation.enqueue(styled, limits=Limits())
    await wait_result(gen, task.id)
    modal = await open_form(gen, task.id)
    assert text_inputs(modal)["prompt"]["value"] == "a heron"
    ix = await submit(gen, prompt="a crane", count="1", seed="")
    child = await gen.bot.store.tasks.get(task_id_of(await answer_text(ix)))
    assert (child.prompt, child.member_prompt, child.style) == (
        "ink wash painting of a crane, monochrome",
        "a crane",
        "Ink",
    )


async def test_the_draft_prefills_the_members_own_words_and_an_empty_random_seed(gen):
    plain = await gen.bot.store.tasks.get(1)
    styled = dataclasses.replace(
        plain, style="Echo", prompt="a cat and a cat", member_prompt="a cat"
    )
    assert RemixDraft.of(styled).prompt == "a cat"
    assert RemixDraft.of(dataclasses.replace(plain, seed=-1, seed_used=None)).seed == ""


async def test_the_edit_again_button_is_taken_away_when_it_stops_working(gen, monkeypatch):
    monkeypatch.setattr(remix_form, "RETRY_SECONDS", 0.05)
    await open_form(gen)
    ix = await submit(gen, prompt="a lighthouse", count="many", seed="")
    await answer_text(ix)
    message_id = int(ix.original()["id"])
    # The refusal itself stays; only its button goes.

    def without_button() -> dict[str, Any] | None:
        message = gen.fake.message(message_id)
        return message if message is not None and not message.get("components") else None

    edited = await gen.fake.changes.wait(without_button, 5, "the retry button to go")
    assert edited["content"].startswith(render("remix.count_not_number", "en-US", value="many"))
