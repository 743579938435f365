"""Server styles end to end: /style add, list, remove and the `style` option of /imagine."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from bot.display import render
from bot.i18n import t
from bot.store import Store, TaskState
from bot.styles import STYLES_MAX, apply_template, restyle, restyle_task
from tests.conftest import ADMIN_A, ADMIN_B, CH_A, CH_B, GUILD_A, GUILD_B, MEMBER_A, MEMBER_A2
from tests.genutil import FAST_POLLING, imagine, is_accepted, task_id_of, text_of, wait_result
from tests.helpers import answer, answer_text, is_ephemeral, png_bytes

INK = {
    "name": "Ink",
    "prompt": "ink drawing of {prompt}, {style} braces kept",
    "negative_prompt": "colour",
    "model": "Watercolor_V1",
    "size": "640x960",
}


@pytest.fixture
async def gen(harness_factory):
    """A harness that polls the emulator quickly and lets a member queue several tasks."""
    h = await harness_factory(miaohua=FAST_POLLING)
    await h.bot.store.settings.update(GUILD_A, user_running=10)
    return h


async def style(h, sub: str, user_id: int = ADMIN_A, locale: str = "en-US", **options: Any):
    """Run /style <sub> in guild A and return the fake interaction."""
    return await h.fake.slash(
        "style",
        subcommand=sub,
        user_id=user_id,
        guild_id=GUILD_A,
        channel_id=CH_A,
        options=options,
        locale=locale,
    )


async def add(h, **options: Any) -> str:
    """Add a style as the admin; return the answer's text."""
    ix = await style(h, "add", **options)
    text = await answer_text(ix)
    assert is_ephemeral(ix)
    return text


async def accepted_task(h, ix):
    """The stored task of an accepted request."""
    text = await answer_text(ix)
    assert is_accepted(text), text
    return await h.bot.store.tasks.get(task_id_of(text))


async def sent(h, task_id: int):
    """What the emulator received for a task (once the bot submitted it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while (task := await h.bot.store.tasks.get(task_id)).service_task_id is None:
        assert loop.time() < deadline, task.state
        await asyncio.sleep(0.02)
    return h.emu.state.tasks[task.service_task_id]


async def test_imagine_with_a_style_sends_the_wrapped_prompt_and_the_result_names_it(gen):
    text = await add(gen, **INK)
    assert text.startswith(render("styles.added", "en-US", name="Ink"))
    ix = await imagine(gen, "a fox {x}", style="ink", negative_prompt="blurry", count=1)
    task = await accepted_task(gen, ix)
    at_service = await sent(gen, task.id)
    # Replaced literally: the braces of the template and of the member's words stay as typed.
    assert at_service.prompt == "ink drawing of a fox {x}, {style} braces kept"
    assert at_service.neg_prompt == "colour, blurry"
    assert (at_service.model_name, at_service.size) == ("Watercolor_V1", (640, 960))
    assert (task.style, task.member_prompt) == ("Ink", "a fox {x}")
    result = await wait_result(gen, task.id)
    fields = {f["name"]: f["value"] for f in result["embeds"][0]["fields"]}
    assert fields[t("result.style", "en-US")] == "Ink"
    # The public status line quotes the member's own words, not the style's opening.
    status = gen.fake.message((await gen.bot.store.tasks.get(task.id)).status_message_id)
    assert "a fox {x}" in status["content"] and "ink drawing" not in status["content"]

    rerun = await gen.fake.click(
        result, f"mh:rerun:{task.id}", user_id=MEMBER_A2, guild_id=GUILD_A, channel_id=CH_A
    )
    child = await accepted_task(gen, rerun)
    assert (child.style, child.member_prompt, child.prompt) == ("Ink", "a fox {x}", task.prompt)
    assert (await sent(gen, child.id)).neg_prompt == "colour, blurry"
    child_result = await wait_result(gen, child.id)
    assert "Ink" in text_of(child_result)


async def test_explicit_options_win_over_the_style_and_the_style_over_server_defaults(gen):
    await gen.bot.store.settings.update(GUILD_A, negative_prompt="lowres", size="512x512")
    await add(gen, name="Plain", prompt="{prompt}, detailed")
    await add(gen, **INK)
    explicit = await accepted_task(
        gen, await imagine(gen, style="Ink", model="Artist_V0.1.3", size="512x768")
    )
    assert (explicit.model, explicit.size) == ("Artist_V0.1.3", "512x768")
    styled = await accepted_task(gen, await imagine(gen, style="Ink"))
    # The style's negative prompt replaces the server's default; model and size are its own.
    assert (styled.negative_prompt, styled.model, styled.size) == (
        "colour",
        "Watercolor_V1",
        "640x960",
    )
    plain = await accepted_task(gen, await imagine(gen, "a boat", style="plain"))
    assert (plain.prompt, plain.negative_prompt, plain.size) == (
        "a boat, detailed",
        "lowres",
        "512x512",
    )
    cleared = await accepted_task(gen, await imagine(gen, style="plain", negative_prompt=""))
    assert cleared.negative_prompt == ""


async def test_img2img_takes_a_style_too(gen):
    await add(gen, name="Blue", prompt="{prompt}, all in blue")
    image = gen.fake.add_attachment(png_bytes(300, 200), "wide.png", "image/png")
    ix = await gen.fake.slash(
        "img2img",
        user_id=MEMBER_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        options={"image": image["id"], "prompt": "a lake", "count": 1, "style": "BLUE"},
        attachments={"image": image},
    )
    task = await accepted_task(gen, ix)
    assert (task.kind, task.style, task.member_prompt) == ("i2i", "Blue", "a lake")
    assert (await sent(gen, task.id)).prompt == "a lake, all in blue"
    assert "Blue" in text_of(await wait_result(gen, task.id))


async def test_unknown_style_is_refused_and_points_to_the_list(gen):
    await add(gen, **INK)
    text = await answer_text(await imagine(gen, style="Watercolour"))
    assert text == render("styles.unknown", "en-US", name="Watercolour")
    assert "/style list" in text
    image = gen.fake.add_attachment(png_bytes(), "a.png", "image/png")
    ix = await gen.fake.slash(
        "img2img",
        user_id=MEMBER_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        options={"image": image["id"], "prompt": "x", "style": "nope"},
        attachments={"image": image},
    )
    assert await answer_text(ix) == render("styles.unknown", "en-US", name="nope")
    assert await gen.bot.store.tasks.recent(GUILD_A) == []
    assert gen.emu.state.calls["upload_imgs"] == 0  # refused before the image was sent


async def test_a_prompt_the_style_makes_too_long_is_refused_naming_the_style(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING, limits={"prompt_length": 40})
    await add(h, name="Long", prompt="{prompt} in the style of a very old map")
    member_prompt = "a harbour at dawn"  # 17 characters: fine alone, 48 once styled
    text = await answer_text(await imagine(h, member_prompt, style="long"))
    assert text == render(
        "refused.styled_prompt_too_long", "en-US", style="Long", length=48, limit=40
    )
    assert await h.bot.store.tasks.recent(GUILD_A) == []
    await accepted_task(h, await imagine(h, member_prompt))


async def test_a_negative_prompt_the_style_makes_too_long_is_refused_naming_it(gen):
    await add(gen, name="Neg", prompt="{prompt}", negative_prompt="n" * 990)
    text = await answer_text(await imagine(gen, negative_prompt="m" * 20, style="Neg"))
    expected = render("styles.negative_too_long", "en-US", style="Neg", length=1012, limit=1000)
    assert text == expected
    assert await gen.bot.store.tasks.recent(GUILD_A) == []


@pytest.mark.parametrize(
    ("options", "key", "params"),
    [
        ({"prompt": "a watercolour"}, "styles.placeholder", {"count": 0}),
        ({"prompt": "{prompt} and {prompt}"}, "styles.placeholder", {"count": 2}),
        ({"prompt": "{Prompt}"}, "styles.placeholder", {"count": 0}),
        ({"name": "\u200b\u2800"}, "styles.empty_name", {}),
        ({"model": "NoSuchModel"}, "options.bad_model", {"model": "NoSuchModel"}),
        (
            {"prompt": "\ufdfa" * 60 + "{prompt}"},  # 68 typed, 1,088 once normalised
            "text.too_long.style_prompt",
            {"length": 1088, "limit": 1000},
        ),
        ({"name": "\ufdfa\ufdfa"}, "styles.name_too_long", {"length": 36, "limit": 32}),
    ],
)
async def test_bad_style_definitions_are_explained_and_nothing_is_saved(
    harness, options, key, params
):
    text = await add(harness, **{"name": "Ink", "prompt": "{prompt}, ink", **options})
    assert text == render(key, "en-US", **params)
    assert await harness.bot.store.styles.for_guild(GUILD_A) == []


async def test_a_style_holding_a_blocked_word_is_refused(harness):
    await harness.bot.store.settings.update(GUILD_A, blocked_words=["gore"])
    text = await add(harness, name="Dark", prompt="{prompt}", negative_prompt="bright, GORE-free")
    assert text == render("styles.blocked_word", "en-US", word="gore")
    assert await harness.bot.store.styles.for_guild(GUILD_A) == []


async def test_unknown_size_lists_the_sizes_and_full_width_braces_count_as_braces(harness):
    text = await add(harness, name="S", prompt="{prompt}", size="123x456")
    assert "123x456" in text and "512x512" in text
    await add(harness, name="Wide", prompt="\uff5bprompt\uff5d, wide")  # ｛prompt｝
    (saved,) = await harness.bot.store.styles.for_guild(GUILD_A)
    assert saved.prompt == "{prompt}, wide"


async def test_members_without_manage_server_can_list_but_not_add_or_remove(harness):
    await add(harness, **INK)
    for sub, options in [
        ("add", {"name": "Mine", "prompt": "{prompt}"}),
        ("remove", {"name": "Ink"}),
    ]:
        ix = await style(harness, sub, user_id=MEMBER_A, **options)
        assert await answer_text(ix) == t("errors.missing_permissions", "en-US")
        assert is_ephemeral(ix)
    assert [s.name for s in await harness.bot.store.styles.for_guild(GUILD_A)] == ["Ink"]
    listed = await answer(await style(harness, "list", user_id=MEMBER_A))
    (embed,) = listed["data"]["embeds"]
    (field,) = embed["fields"]
    assert field["name"] == "Ink"
    for part in ("ink drawing of {prompt}", "colour", "Watercolor_V1", "640x960"):
        assert part in field["value"]


async def test_adding_a_name_again_in_any_case_replaces_the_style(harness):
    await add(harness, name="Ink", prompt="ink drawing of {prompt}")
    text = await add(harness, name="INK", prompt="{prompt}, in ink")
    assert text.startswith(
        render("styles.replaced", "en-US", name="INK", old="ink drawing of {prompt}")
    )
    (saved,) = await harness.bot.store.styles.for_guild(GUILD_A)
    assert (saved.name, saved.prompt, saved.negative_prompt, saved.model) == (
        "INK",
        "{prompt}, in ink",
        "",
        None,
    )


async def test_remove_forgets_the_style_and_an_unknown_name_is_explained(harness):
    await add(harness, **INK)
    text = await answer_text(await style(harness, "remove", name="iNK"))
    assert text == render("styles.removed", "en-US", name="Ink")
    assert await harness.bot.store.styles.for_guild(GUILD_A) == []
    text = await answer_text(await style(harness, "remove", name="Ink"))
    assert text == render("styles.unknown", "en-US", name="Ink")
    text = await answer_text(await style(harness, "list", user_id=MEMBER_A))
    assert text == t("styles.none", "en-US")


async def test_a_server_holds_at_most_25_styles_and_a_full_list_fits_discord(harness):
    long_template = "{prompt}, " + "with `many` *marked* words and [links](x) " * 40
    for i in range(STYLES_MAX):
        await harness.bot.store.styles.save(
            guild_id=GUILD_A,
            name=f"Style number {i:02} " + "x" * 14,
            prompt=long_template[:990],
            negative_prompt="n" * 1000,
            model="Artist v0.3.0 Beta",
            size="512x512",
            limit=STYLES_MAX,
        )
    text = await add(harness, name="One more", prompt="{prompt}")
    assert text == render("styles.too_many", "en-US", limit=STYLES_MAX)
    # Replacing one of them is still allowed at the cap.
    await add(harness, name="style number 00 " + "x" * 14, prompt="{prompt}, shorter")
    # Discord (the fake checks every limit) accepts the list; every style is in it.
    listed = await answer(await style(harness, "list", user_id=MEMBER_A))
    (embed,) = listed["data"]["embeds"]
    assert len(embed["fields"]) == STYLES_MAX
    assert embed["fields"][0]["value"].startswith("{prompt}, shorter")
    # And autocomplete offers at most Discord's 25 choices, each valid.
    choices = await harness.fake.autocomplete(
        "imagine",
        focused="style",
        options={"prompt": "x", "style": "number"},
        user_id=MEMBER_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
    )
    assert len(choices) == STYLES_MAX


async def test_style_autocomplete_offers_the_guilds_styles_matching_what_was_typed(harness):
    await add(harness, **INK)
    await add(harness, name="Pastel", prompt="soft pastel {prompt}")
    await harness.bot.store.styles.save(
        guild_id=GUILD_B, name="Other guild", prompt="{prompt}", limit=STYLES_MAX
    )

    async def offered(command: str, typed: str, sub: str | None = None) -> list[str]:
        options = {"style": typed} if sub is None else {"name": typed}
        choices = await harness.fake.autocomplete(
            command,
            subcommand=sub,
            focused="style" if sub is None else "name",
            options=options,
            user_id=MEMBER_A,
            guild_id=GUILD_A,
            channel_id=CH_A,
        )
        return [c["value"] for c in choices]

    assert await offered("imagine", "") == ["Ink", "Pastel"]
    assert await offered("imagine", "past") == ["Pastel"]
    assert await offered("img2img", "SOFT") == ["Pastel"]  # the template matches too
    assert await offered("style", "in", sub="remove") == ["Ink"]


async def test_styles_survive_a_restart_and_belong_to_their_guild(gen):
    await add(gen, **INK)
    await gen.restart()
    listed = await answer_text(await style(gen, "list", user_id=MEMBER_A))
    assert "Ink" in listed
    task = await accepted_task(gen, await imagine(gen, "a cat", style="Ink", count=1))
    assert (await sent(gen, task.id)).prompt == "ink drawing of a cat, {style} braces kept"
    other = await gen.fake.slash(
        "imagine",
        user_id=ADMIN_B,
        guild_id=GUILD_B,
        channel_id=CH_B,
        options={"prompt": "a cat", "style": "Ink"},
    )
    assert await answer_text(other) == render("styles.unknown", "en-US", name="Ink")


async def test_chinese_speakers_get_chinese_answers_and_embed(gen):
    ix = await style(gen, "add", locale="zh-CN", name="水墨", prompt="{prompt}，水墨画")
    assert (await answer_text(ix)).startswith(render("styles.added", "zh-CN", name="水墨"))
    ix = await style(gen, "add", locale="zh-CN", name="坏", prompt="水墨画")
    assert await answer_text(ix) == render("styles.placeholder", "zh-CN", count=0)
    assert "恰好包含一次 `{prompt}`" in await answer_text(ix)
    listed = await answer(await style(gen, "list", user_id=MEMBER_A, locale="zh-CN"))
    assert listed["data"]["embeds"][0]["title"] == "Guild A 的 1 个风格"
    ix = await gen.fake.slash(
        "imagine",
        user_id=MEMBER_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        options={"prompt": "山", "style": "水墨", "count": 1},
        locale="zh-CN",
    )
    assert (await answer_text(ix)).startswith(t("status.line.running", "zh-CN", id=1) + "\n")
    result = await wait_result(gen, 1)
    fields = {f["name"]: f["value"] for f in result["embeds"][0]["fields"]}
    assert fields["风格"] == "水墨"
    assert result["embeds"][0]["description"] == "山,水墨画"  # NFKC, as every prompt
    ix = await gen.fake.slash(
        "imagine",
        user_id=MEMBER_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        options={"prompt": "山", "style": "油画"},
        locale="zh-CN",
    )
    assert await answer_text(ix) == render("styles.unknown", "zh-CN", name="油画")


async def test_the_style_commands_are_localized_in_the_registered_commands(harness):
    put = [r for r in harness.fake.requests if r.method == "PUT" and r.path.endswith("/commands")]
    commands = {c["name"]: c for c in put[-1].json}
    assert commands["style"]["name_localizations"]["zh-CN"] == "风格"
    imagine_options = {o["name"]: o for o in commands["imagine"]["options"]}
    assert imagine_options["style"]["autocomplete"] is True
    assert imagine_options["style"]["name_localizations"]["zh-CN"] == "风格"
    # Members see the group (they may list styles); add and remove check Manage Server.
    assert commands["style"].get("default_member_permissions") is None


# restyle: what a remix of a styled task sends


async def _styled_task(store: Store, member_prompt: str, template: str):
    return await store.tasks.create(
        guild_id=GUILD_A,
        channel_id=CH_A,
        user_id=MEMBER_A,
        kind="t2i",
        model="m",
        prompt=apply_template(template, member_prompt),
        negative_prompt="",
        count=1,
        scale=7,
        seed=-1,
        size="512x512",
        style="Ink",
        member_prompt=member_prompt,
    )


async def test_restyle_applies_the_style_as_it_is_now_else_keeps_the_tasks_wrapping():
    async with await Store.open(":memory:") as store:
        task = await _styled_task(store, "a cat", "ink drawing of {prompt} {x}")
        # No style of that name any more: the task's own wrapping is kept, literally.
        assert restyle(task, "a dog") == ("ink drawing of a dog {x}", "a dog")
        # Words the template also holds are ambiguous: the first occurrence is taken.
        twice = await _styled_task(store, "a cat", "a cat drawn in ink: {prompt}")
        assert restyle(twice, "a dog") == ("a dog drawn in ink: a cat", "a dog")
        await store.styles.save(
            guild_id=GUILD_A, name="ink", prompt="{prompt}, new ink {x}", limit=STYLES_MAX
        )
        assert await restyle_task(store.styles, task, "  a {dog} ") == (
            "a {dog}, new ink {x}",
            "a {dog}",
        )
        await store.styles.remove(GUILD_A, "INK")
        clear = await _styled_task(store, "a fox", "ink drawing of {prompt}, bold")
        assert await restyle_task(store.styles, clear, "a hare") == (
            "ink drawing of a hare, bold",
            "a hare",
        )
        # Words the stored prompt lacks (edited by hand) are sent alone rather than guessed.
        odd = dataclasses.replace(clear, member_prompt="a wolf")
        assert restyle(odd, "a hare") == ("a hare", "a hare")
        plain = dataclasses.replace(clear, style=None, member_prompt=None)
        assert restyle(plain, "a\u200b hare") == ("a hare", None)


async def test_saving_styles_concurrently_never_passes_the_cap(tmp_path):
    async with await Store.open(tmp_path / "s.sqlite3") as store:
        saved = await asyncio.gather(
            *(
                store.styles.save(guild_id=GUILD_A, name=f"s{i}", prompt="{prompt}", limit=5)
                for i in range(12)
            )
        )
        assert sum(s is not None for s in saved) == 5
        assert len(await store.styles.for_guild(GUILD_A)) == 5
        assert await store.styles.save(guild_id=GUILD_B, name="s0", prompt="{prompt}", limit=5)


async def test_a_delivered_styled_task_keeps_its_style_after_a_restart(gen):
    await add(gen, **INK)
    task = await accepted_task(gen, await imagine(gen, "an owl", style="Ink", count=1))
    await wait_result(gen, task.id)
    await gen.restart()
    kept = await gen.bot.store.tasks.get(task.id)
    assert kept.state == TaskState.DELIVERED
    assert (kept.style, kept.member_prompt) == ("Ink", "an owl")
