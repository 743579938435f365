"""Member and service text is shown literally and within Discord's limits, and every
interaction gets an answer even when its error message would be too long."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.display import QUOTED_MAX, clip, escaped, render, shown
from bot.i18n import t
from tests.conftest import ADMIN_A, CH_A, GUILD_A, MEMBER_A
from tests.genutil import FAST_POLLING, imagine, task_id_of, wait_result
from tests.helpers import answer, answer_text, message_text, png_bytes
from tests.limits import assert_within_limits
from tests.test_training import announcement, images, train, zip_bytes

# A masked link: "[text](url)" whose "[" is not escaped.
MASKED_LINK = re.compile(r"(?<!\\)\[[^\]]*\]\(\s*<?https?://")
LONG_MODEL = "Long_" * 200  # 1,000 characters, "_" included so escaping lengthens it


async def img2img(harness, filename: str, data: bytes):
    image = harness.fake.add_attachment(data, filename, "image/png")
    return await harness.fake.slash(
        "img2img",
        user_id=MEMBER_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        options={"prompt": "a fox"},
        attachments={"image": image},
    )


async def test_prompt_markdown_is_shown_literally_in_the_result(harness_factory) -> None:
    h = await harness_factory(miaohua=FAST_POLLING)
    prompt = "[Free Nitro](https://discord.gift/x) and [more](https://e.test) **now** @everyone"
    ix = await imagine(h, prompt, negative_prompt="[click](https://e.test/x) __bad__")
    result = await wait_result(h, task_id_of(await answer_text(ix)))
    embed = result["embeds"][0]  # the details; any others show the further images
    shown = message_text(result)
    assert not MASKED_LINK.search(shown), shown
    assert r"\*\*now\*\*" in embed["description"] and "@everyone" not in shown
    assert r"\_\_bad\_\_" in shown
    assert_within_limits(h.fake)


async def test_a_long_attachment_name_gets_a_short_refusal(harness) -> None:
    name = "a" * 3000 + ".png"
    text = await answer_text(await img2img(harness, name, b"not an image at all"))
    assert "is not a PNG, JPEG or WEBP image" in text and "aaaa" in text
    assert len(text) <= 2000
    assert_within_limits(harness.fake)


async def test_an_error_reply_discord_refuses_is_replaced_by_a_short_one(harness) -> None:
    # Discord refuses the first followup (as it would an invalid one): the member still
    # gets an answer instead of "thinking..." until the interaction expires.
    harness.fake.fail("POST", r"/webhooks/\d+/[^/]+", 400, body={"code": 50035})
    ix = await img2img(harness, "notes.png", b"plain text")
    body = await ix.wait_for(lambda kind, b: kind == "followup")
    assert message_text(body) == t("errors.reply_failed", "en-US")
    assert_within_limits(harness.fake)


async def test_long_zip_member_names_get_a_short_refusal(harness) -> None:
    long_name = "n" * 60_000 + ".png"
    files = {long_name: png_bytes()[:60], **{"b" * 60_000 + f"{i}.txt": b"x" for i in range(3)}}
    archive = harness.fake.add_attachment(zip_bytes(files), "set.zip", "application/zip")
    text = await train(harness, name="Long Names", attachments={"archive": archive})
    assert "could not be read" in text and len(text) <= 2000
    assert await harness.bot.store.trainings.recent(GUILD_A) == []
    assert_within_limits(harness.fake)


async def test_skipped_zip_members_with_long_names_are_listed_briefly(harness) -> None:
    files = {f"pic{i}.png": png_bytes(40, 40) for i in range(3)}
    files.update({"b" * 60_000 + f"{i}.txt": b"x" for i in range(12)})
    archive = harness.fake.add_attachment(zip_bytes(files), "set.zip", "application/zip")
    text = await train(harness, name="Skips", attachments={"archive": archive})
    assert "3 new images" in text and len(text) <= 2000
    assert_within_limits(harness.fake)


async def test_autocomplete_leaves_out_models_discord_would_refuse(harness_factory) -> None:
    h = await harness_factory(emulator={"models": ["Artist_V0.1.3", "M" * 150, " ", "Ok_2"]})
    choices = await h.fake.autocomplete(
        "imagine",
        focused="model",
        options={"prompt": "x"},
        user_id=MEMBER_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
    )
    assert [c["value"] for c in choices] == ["Artist_V0.1.3", "Ok_2"]
    assert_within_limits(h.fake)


async def test_result_embed_stays_within_6000_with_a_large_prompt_length(harness_factory) -> None:
    h = await harness_factory(
        miaohua=FAST_POLLING,
        limits={"prompt_length": 50_000},
        emulator={"models": ["Artist_V0.1.3", LONG_MODEL]},
    )
    # 300 characters typed, 5,400 once normalised, all within the guild's prompt_length.
    ix = await imagine(h, "\ufdfa" * 300, negative_prompt="*" * 1000, model=LONG_MODEL)
    result = await wait_result(h, task_id_of(await answer_text(ix)))
    embed = result["embeds"][0]  # the details; any others show the further images
    assert embed["description"].startswith("صلى الله")
    assert_within_limits(h.fake)
    status = await h.fake.slash(
        "status", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A, options={}
    )
    await answer(status)
    assert_within_limits(h.fake)


async def test_training_names_are_shown_literally(harness) -> None:
    text = await train(harness, name="__Ink__ Style", attachments=images(harness, 3))
    assert r"**\_\_Ink\_\_ Style**" in text
    done = await announcement(harness, "is ready")
    assert r"\_\_Ink\_\_ Style" in done["content"] and "__Ink__ Style" not in done["content"]
    progress = harness.fake.channel_messages(CH_A)[0]
    assert r"\_\_Ink\_\_ Style" in progress["content"]
    assert_within_limits(harness.fake)


async def test_trigger_word_and_description_are_measured_after_normalisation(harness) -> None:
    text = await train(harness, trigger_word="\ufdfa" * 10, attachments=images(harness, 3))
    assert text == t("text.too_long.trigger_word", "en-US", length=180, limit=60)
    text = await train(harness, description="\ufdfa" * 17, attachments=images(harness, 3))
    assert text == t("text.too_long.description", "en-US", length=306, limit=300)
    assert await harness.bot.store.trainings.recent(GUILD_A) == []


def test_every_masked_link_on_a_line_is_escaped() -> None:
    # discord.utils.escape_markdown alone escapes only the first of these.
    text = shown("[a](https://x.test) then [Free Nitro](https://discord.gift/y)")
    assert not MASKED_LINK.search(text), text


def test_values_in_code_spans_are_not_backslashed_but_cannot_close_the_span() -> None:
    text = render("image.bad_type", "en-US", name="my_file`.png")
    assert text == t("image.bad_type", "en-US", name="my_fileˋ.png")
    assert render("image.bad_type", "en-US", name="x" * 5000).count("x") == QUOTED_MAX - 1


# Every printable ASCII character and a few others, alone and where markdown reads it: at a
# line's start, doubled, before a mention's name, inside a link.
PLACES = [
    "{c}",
    "a{c}b",
    " {c} x",
    "x\n{c} y",
    "{c}{c}a{c}{c}",
    "{c}everyone",
    "{c}123456789012345678",
    "see https://e.test/{c}x_y",
]
CHARACTERS = [*string.printable, "好", "\u200b", "＃"]


@pytest.mark.parametrize("place", PLACES)
def test_text_skipped_by_the_markup_check_is_shown_as_escaped_text_would_be(place: str) -> None:
    # `shown` runs discord.py's escaping only on text holding a character it could act on.
    for c in CHARACTERS:
        text = place.format(c=c)
        assert shown(text, 500) == escaped(text), text


@given(st.text(), st.integers(min_value=0, max_value=80))
def test_shown_is_escaped_text_clipped(text: str, limit: int) -> None:
    assert shown(text, limit) == clip(escaped(text), limit)
