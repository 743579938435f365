"""Image generation end to end: commands, validation, status messages, delivery, failures."""

from __future__ import annotations

import asyncio

import discord
import pytest

from bot.i18n import t
from bot.store import TaskState
from tests.conftest import ACCOUNTS, CH_A, GUILD_A, MEMBER_A, MEMBER_A2, NSFW_A
from tests.genutil import (
    FAST_POLLING,
    attachments_total,
    eventually,
    imagine,
    is_accepted,
    result_of,
    task_id_of,
    text_of,
    wait_result,
)
from tests.helpers import answer_text, is_ephemeral, png_bytes

# Generation and delivery end to end, on SQLite and on PostgreSQL.
pytestmark = pytest.mark.backends()


@pytest.fixture
async def gen(harness_factory):
    """A harness that polls the emulator quickly."""
    return await harness_factory(miaohua=FAST_POLLING)


async def accepted(ix) -> int:
    """The task id of an accepted request: answered at once, its answer is the task's
    public status message; answered after a deferral, a private note."""
    text = await answer_text(ix)
    assert is_accepted(text), text
    assert is_ephemeral(ix) == text.startswith("Accepted as task #"), text
    return task_id_of(text)


async def delivered(h, ids: list[int]) -> list:
    """Wait until every task is marked delivered; return them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:
        tasks = [await h.bot.store.tasks.get(i) for i in ids]
        if all(task.state == TaskState.DELIVERED for task in tasks):
            return tasks
        assert loop.time() < deadline, [task.state for task in tasks]
        await asyncio.sleep(0.02)


async def test_one_image_is_delivered_with_mention_embed_and_buttons(gen):
    task_id = await accepted(await imagine(gen, count=1, seed=1234, negative_prompt="blurry"))
    result = await wait_result(gen, task_id)
    assert result["content"] == f"<@{MEMBER_A}>"
    assert [a["filename"] for a in result["attachments"]] == [f"task-{task_id}-1.jpg"]
    text = text_of(result)
    for expected in ("a red fox in the snow", "blurry", "1234", "512x512", "Time"):
        assert expected in text
    custom_ids = [c["custom_id"] for row in result["components"] for c in row["components"]]
    assert custom_ids == [
        f"mh:rerun:{task_id}",
        f"mh:remix:{task_id}",
        f"mh:del:{task_id}",
        f"mh:var:{task_id}:0",
    ]
    post = next(
        r
        for r in gen.fake.requests
        if r.method == "POST" and r.path == f"/channels/{CH_A}/messages" and r.files
    )
    assert post.json["allowed_mentions"] == {"parse": [], "users": [MEMBER_A]}
    assert post.json["nonce"] and post.json["enforce_nonce"] is True
    (task,) = await delivered(gen, [task_id])
    assert task.result_message_id == int(result["id"])
    status = gen.fake.message(task.status_message_id)
    await gen.fake.wait_for_message(
        CH_A, lambda m: m["id"] == status["id"] and "done" in m["content"]
    )
    status = gen.fake.message(task.status_message_id)
    assert result["id"] in status["content"]  # jump link to the result
    await gen.idle()
    # No reaction from the bot unless `discord.rerun_reaction` asks for it: the footer names
    # the reactions and the Rerun button is there.
    assert gen.fake.reactions(CH_A, int(result["id"])) == {}
    assert "🔁 rerun" in result["embeds"][0]["footer"]["text"]


async def test_rerun_reaction_setting_adds_one_rerun_reaction_under_each_channel_result(
    harness_factory,
):
    h = await harness_factory(miaohua=FAST_POLLING, discord={"rerun_reaction": True})
    task_id = await accepted(await imagine(h, count=1))
    result = await wait_result(h, task_id)
    await eventually(lambda: "🔁" in h.fake.reactions(CH_A, int(result["id"])))
    await h.idle()
    puts = [r.path for r in h.fake.requests if r.method == "PUT" and "/reactions/" in r.path]
    assert puts == [f"/channels/{CH_A}/messages/{result['id']}/reactions/🔁/@me"]


async def test_eight_images_come_as_a_gallery_of_four_and_eight_variation_buttons(gen):
    task_id = await accepted(await imagine(gen, count=8, size="512x512"))
    result = await wait_result(gen, task_id)
    names = [a["filename"] for a in result["attachments"]]
    assert names == [f"task-{task_id}-{i + 1}.jpg" for i in range(8)]
    shown = [embed["image"]["url"] for embed in result["embeds"]]
    assert shown == [f"attachment://{name}" for name in names[:4]]
    variations = [
        c["custom_id"]
        for row in result["components"]
        for c in row["components"]
        if c["custom_id"].startswith("mh:var:")
    ]
    assert len(variations) == 8


@pytest.mark.slow
async def test_every_size_of_the_form_is_generated_at_that_size(gen):
    form = await gen.bot.forms.generation_form(GUILD_A)
    sizes = form.all_sizes()
    await gen.bot.store.settings.update(GUILD_A, user_running=len(sizes))
    ids = {}
    for size in sizes:
        ids[size] = await accepted(await imagine(gen, f"size {size}", count=1, size=size))
    for size, task_id in ids.items():
        result = await wait_result(gen, task_id, timeout=20)
        width, height = (int(v) for v in size.split("x"))
        (attachment,) = result["attachments"]
        assert (attachment["width"], attachment["height"]) == (width, height), size


@pytest.mark.parametrize(
    ("options", "key", "params"),
    [
        ({"model": "NoSuchModel"}, "options.bad_model", {"model": "NoSuchModel"}),
        ({"count": 9}, "options.bad_count", {"min": 1, "max": 8}),
        ({"count": 0}, "options.bad_count", {"min": 1, "max": 8}),
        ({"scale": 21}, "options.bad_scale", {"min": 1, "max": 20}),
        ({"seed": 10_000_000}, "options.bad_seed", {"min": 0, "max": 9_999_999}),
    ],
)
async def test_invalid_options_are_explained(gen, options, key, params):
    ix = await imagine(gen, **options)
    assert await answer_text(ix) == t(key, "en-US", **params)
    assert await gen.bot.store.tasks.recent(GUILD_A) == []


async def test_unknown_size_lists_the_available_ones(gen):
    text = await answer_text(await imagine(gen, size="123x456"))
    assert "123x456" in text and "512x512" in text


async def test_admission_refusals_and_quota(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING, limits={"prompt_length": 40})
    store = h.bot.store.settings
    text = await answer_text(await imagine(h, "x" * 41))
    assert text == t("refused.prompt_too_long", "en-US", length=41, limit=40)
    await store.update(GUILD_A, blocked_words=["gore"])
    text = await answer_text(await imagine(h, "Some GORE please"))
    assert text == t("refused.blocked_word", "en-US", word="gore")
    await store.update(GUILD_A, blocked_words=[], allowed_channels=[NSFW_A])
    text = await answer_text(await imagine(h))
    assert text == t("refused.channel_not_allowed", "en-US")
    await store.update(GUILD_A, allowed_channels=[], daily_quota=2)
    for _ in range(2):
        await wait_result(h, await accepted(await imagine(h, user_id=MEMBER_A2, count=1)))
    text = await answer_text(await imagine(h, user_id=MEMBER_A2))
    assert text.startswith("You reached today's limit of 2 images")
    assert len(await h.bot.store.tasks.recent(GUILD_A)) == 2


async def test_a_member_cannot_go_beyond_the_running_limit_where_none_may_wait(gen):
    gen.emu.state.settings.generation_time = 2.0
    await gen.bot.store.settings.update(GUILD_A, user_running=1, user_queued=0)
    await accepted(await imagine(gen, count=1))
    text = await answer_text(await imagine(gen, count=1))
    assert text == (
        "You already have 1 task running, and this server lets none wait in line; "
        "try again once it has finished."
    )


async def test_img2img_uploads_the_attachment_and_picks_the_closest_aspect(gen):
    image = gen.fake.add_attachment(png_bytes(300, 200), "wide.png", "image/png")
    ix = await gen.fake.slash(
        "img2img",
        user_id=MEMBER_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        options={"image": image["id"], "prompt": "make it blue", "count": 1},
        attachments={"image": image},
    )
    task_id = await accepted(ix)
    result = await wait_result(gen, task_id)
    task = await gen.bot.store.tasks.get(task_id)
    assert task.kind == "i2i" and "/files/" in task.init_image_url
    (width, height) = (int(v) for v in task.size.split("x"))
    assert width > height  # 3:2, closest to the 300x200 image
    assert result["attachments"][0]["width"] == width
    assert gen.emu.state.calls["upload_imgs"] == 1


@pytest.mark.parametrize(
    ("data", "filename", "key"),
    [
        (b"definitely not an image", "notes.png", "image.bad_type"),
        (png_bytes(64, 64)[:-30], "broken.png", "image.corrupt"),
        (png_bytes(900, 900, fmt="BMP"), "huge.bmp", "image.too_large"),
    ],
)
async def test_bad_attachments_are_refused(harness_factory, data, filename, key):
    h = await harness_factory(miaohua=FAST_POLLING, limits={"attachment_bytes": 200_000})
    image = h.fake.add_attachment(data, filename, "image/png")
    ix = await h.fake.slash(
        "img2img",
        user_id=MEMBER_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        options={"image": image["id"], "prompt": "anything"},
        attachments={"image": image},
    )
    text = await answer_text(ix)
    assert text.startswith(t(key, "en-US", name=filename, size_mb="", limit_mb="")[:12]), text
    assert f"`{filename}`" in text
    assert h.emu.state.calls["upload_imgs"] == 0


async def test_context_menu_runs_img2img_on_a_messages_image(gen):
    task_id = await accepted(await imagine(gen, count=1))
    source = await wait_result(gen, task_id)
    ix = await gen.fake.context_menu(
        "Use as init image", user_id=MEMBER_A2, guild_id=GUILD_A, channel_id=CH_A,
        target_message=source,
    )  # fmt: skip
    modal = (await ix.response())["data"]
    assert modal["custom_id"].startswith("generate:init:")
    submit = await gen.fake.submit_modal(
        "generate:init",
        {"prompt": "as a watercolor", "negative_prompt": ""},
        user_id=MEMBER_A2,
        guild_id=GUILD_A,
        channel_id=CH_A,
    )
    new_id = await accepted(submit)
    await wait_result(gen, new_id)
    task = await gen.bot.store.tasks.get(new_id)
    assert (task.kind, task.user_id, task.prompt) == ("i2i", MEMBER_A2, "as a watercolor")


async def test_context_menu_on_a_message_without_image(gen):
    task_id = await accepted(await imagine(gen, count=1))
    await wait_result(gen, task_id)
    status = (await gen.bot.store.tasks.get(task_id)).status_message_id
    ix = await gen.fake.context_menu(
        "Use as init image", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A,
        target_message=gen.fake.message(status),
    )  # fmt: skip
    assert await answer_text(ix) == t("generate.no_image", "en-US")


@pytest.mark.slow
async def test_busy_account_back_pressure_delivers_everything(harness_factory):
    # Generations last long enough that the four tasks overlap at the service however long
    # the bot takes to accept each one (with 0.05 s they could run one after the other).
    emulator = {"faults": {"busy_above": 1}, "generation_time": 0.5}
    h = await harness_factory(miaohua=FAST_POLLING, emulator=emulator)
    await h.bot.store.settings.update(GUILD_A, user_running=5)
    commands = await asyncio.gather(*(imagine(h, f"fox {i}", count=1) for i in range(4)))
    ids = [await accepted(ix) for ix in commands]
    for task_id in ids:
        await wait_result(h, task_id, timeout=20)
    tasks = await delivered(h, ids)
    assert sum(task.attempts for task in tasks) > 0  # at least one 603 was absorbed


def limit_uploads(gen, monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """A guild whose upload limit is `size` bytes, known to discord.py and enforced by Discord."""
    monkeypatch.setattr(discord.Guild, "filesize_limit", property(lambda guild: size))
    gen.fake.attachment_size_limit = size


async def test_a_result_over_the_upload_limit_is_shrunk_to_fit(gen, monkeypatch):
    limit_uploads(gen, monkeypatch, 40_000)
    task_id = await accepted(await imagine(gen, count=4))
    result = await wait_result(gen, task_id)
    assert attachments_total(result) <= 40_000
    assert len(result["attachments"]) == 4  # the 4 images, re-encoded
    assert t("result.reduced", "en-US") in text_of(result)


async def test_a_result_that_cannot_fit_is_linked(gen, monkeypatch):
    limit_uploads(gen, monkeypatch, 200)
    task_id = await accepted(await imagine(gen, count=2))
    result = await wait_result(gen, task_id)
    assert result["attachments"] == []
    assert text_of(result).count("http://127.0.0.1") == 2  # both originals linked


async def test_result_goes_by_dm_when_the_channel_refuses(gen):
    task_id = await accepted(await imagine(gen, count=1))
    # The status message is posted after the answer, without holding it up: let it through.
    await gen.fake.wait_for_message(CH_A, lambda m: f"#{task_id}" in m["content"])
    gen.fake.fail("POST", rf"/channels/{CH_A}/messages", 403)
    (dm,) = await eventually(lambda: gen.fake.dm_messages(MEMBER_A))
    assert dm["embeds"][0]["title"] == f"Task #{task_id}" and dm["attachments"]
    (task,) = await delivered(gen, [task_id])
    assert task.result_message_id == int(dm["id"])


async def failure_message(h, task_id: int) -> str:
    message = await h.fake.wait_for_message(
        CH_A, lambda m: m["content"].startswith(f"<@{MEMBER_A}> your task #{task_id} failed")
    )
    return message["content"]


async def test_generation_failure_reaches_the_requester(gen):
    gen.emu.state.settings.faults.task_failure_rate = 1.0
    task_id = await accepted(await imagine(gen, count=1))
    text = await failure_message(gen, task_id)
    task = await gen.bot.store.tasks.get(task_id)
    assert task.error == "generation_failed" and task.error_detail in text
    status = await gen.fake.wait_for_message(
        CH_A, lambda m: int(m["id"]) == task.status_message_id and "failed" in m["content"]
    )
    assert f"#{task_id}" in status["content"]


async def test_not_enough_points_reaches_the_requester(gen):
    gen.emu.state.accounts[ACCOUNTS[GUILD_A][0]].points = 0
    task_id = await accepted(await imagine(gen, count=1))
    text = await failure_message(gen, task_id)
    assert t("fail.not_enough_points", "en-US") in text


async def test_invalid_account_points_admins_to_account_set(gen):
    await gen.bot.forms.generation_form(GUILD_A)  # cached: the command itself still works
    gen.emu.state.accounts[ACCOUNTS[GUILD_A][0]].password = "changed-elsewhere"
    gen.emu.expire_tokens()
    task_id = await accepted(await imagine(gen, count=1))
    text = await failure_message(gen, task_id)
    assert "/account set" in text


async def test_timeout_reaches_the_requester(gen):
    gen.bot.generation.poller.task_timeout = 0.3
    gen.emu.state.settings.generation_time = 30.0
    task_id = await accepted(await imagine(gen, count=1))
    text = await failure_message(gen, task_id)
    assert t("fail.timeout", "en-US") in text


async def test_status_message_is_edited_on_change_only_and_throttled(gen):
    board = gen.bot.delivery.status
    board.interval = 0.3
    task = await gen.bot.store.tasks.create(
        guild_id=GUILD_A, channel_id=CH_A, user_id=MEMBER_A, kind="t2i", model="m",
        prompt="p", count=1, scale=7, size="512x512",
    )  # fmt: skip
    for text in ("one", "two", "two", "three", "four"):
        await board.show(task, text)
    message_id = (await gen.bot.store.tasks.get(task.id)).status_message_id
    path = f"/channels/{CH_A}/messages/{message_id}"
    await gen.fake.wait_for_message(CH_A, lambda m: m["content"] == "four", timeout=2)
    edits = [r for r in gen.fake.requests if r.method == "PATCH" and r.path == path]
    assert [e.json["content"] for e in edits] == ["four"]  # two and three were coalesced
    await board.show(task, "four")  # unchanged: no edit
    await asyncio.sleep(0.35)
    await board.show(task, "five")  # the interval has passed: edited at once
    await board.show(task, "six")  # too soon after "five": held back
    edits = [r.json["content"] for r in gen.fake.requests if r.method == "PATCH" and r.path == path]
    assert edits == ["four", "five"]
    await gen.fake.wait_for_message(CH_A, lambda m: m["content"] == "six", timeout=2)


@pytest.mark.slow
async def test_status_shows_queue_position_then_waiting_at_the_service(gen):
    gen.emu.state.settings.generation_time = 0.4
    await gen.bot.store.settings.update(GUILD_A, user_running=5)
    gen.bot.generation.account_concurrency = 1
    answers = [await imagine(gen, f"q{i}", count=1) for i in range(3)]
    ids = [await accepted(ix) for ix in answers]
    # The last one waits in line: its answer, which is its status message, says so.
    assert f"#{ids[-1]} is queued" in await answer_text(answers[-1])
    await wait_result(gen, ids[-1], timeout=20)
    last = await gen.bot.store.tasks.get(ids[-1])
    assert last.status_message_id == answers[-1].original_id
    contents = await eventually(
        lambda: [
            r.json["content"]
            for r in gen.fake.requests
            if r.method == "PATCH" and r.path.endswith(f"/{last.status_message_id}")
        ]
    )
    assert (
        "done"
        in (
            await gen.fake.wait_for_message(
                CH_A, lambda m: int(m["id"]) == last.status_message_id and "done" in m["content"], 5
            )
        )["content"]
    )
    assert all("#3" in c for c in contents)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["restart", "kill"])
async def test_each_result_is_delivered_exactly_once_across_a_restart(gen, how):
    await gen.bot.store.settings.update(GUILD_A, user_running=5)
    ids = [await accepted(await imagine(gen, f"r{i}", count=1)) for i in range(4)]
    await (gen.restart() if how == "restart" else gen.kill())
    for task_id in ids:
        await wait_result(gen, task_id, timeout=20)
    await delivered(gen, ids)
    await gen.idle()
    for task_id in ids:
        assert len(result_of(gen, task_id)) == 1


async def test_chinese_speakers_get_chinese_answers_and_status(gen):
    ix = await gen.fake.slash(
        "imagine",
        user_id=MEMBER_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        options={"prompt": "山水画", "count": 1},
        locale="zh-CN",
    )
    text = await answer_text(ix)
    assert text.startswith(t("status.line.running", "zh-CN", id=1) + "\n"), text
    result = await wait_result(gen, 1)
    assert result["embeds"][0]["title"] == "任务 #1"
    (task,) = await delivered(gen, [1])
    assert task.status_message_id == ix.original_id  # the answer is the status message
    status = await gen.fake.wait_for_message(
        CH_A, lambda m: int(m["id"]) == task.status_message_id and "已完成" in m["content"]
    )
    assert "任务 #1" in status["content"]


async def test_an_image_that_cannot_be_downloaded_is_linked_and_said_so(gen):
    from bot.discord_jobs.downloads import DownloadError

    fetcher = gen.bot.delivery.fetcher
    real_fetch = fetcher.fetch

    async def flaky(url):
        if url.endswith("_00001.jpg"):
            raise DownloadError("HTTP 503")
        return await real_fetch(url)

    fetcher.fetch = flaky
    task_id = await accepted(await imagine(gen, count=2))
    message = await wait_result(gen, task_id)
    assert "1 image could not be downloaded in full" in text_of(message)
    assert "_00001.jpg" in text_of(message)
    files = {a["filename"]: a["size"] for a in message["attachments"]}
    assert files["task-1-2.jpg"] < files["task-1-1.jpg"]  # the smaller preview stands in


async def test_results_that_cannot_be_downloaded_fail_with_a_message(gen):
    from bot.discord_jobs.downloads import DownloadError

    async def broken(url):
        raise DownloadError("HTTP 503")

    gen.bot.delivery.fetcher.fetch = broken
    gen.bot.generation.delivery_retry = 0.05
    task_id = await accepted(await imagine(gen, count=1))
    text = await failure_message(gen, task_id)
    assert "could not be posted" in text
    task = await gen.bot.store.tasks.get(task_id)
    assert task.state == TaskState.FAILED and task.error == "delivery_failed"
    assert result_of(gen, task_id) == []
    gen.check.ignore(lambda r: "could not download" in r.getMessage())


async def test_omitted_options_take_the_guild_defaults_then_the_forms(gen):
    await gen.bot.store.settings.update(
        GUILD_A, size="640x960", count=2, scale=11, model="Watercolor_V1", negative_prompt="blur"
    )
    task_id = await accepted(await imagine(gen))
    task = await gen.bot.store.tasks.get(task_id)
    assert (task.size, task.count, task.scale, task.model, task.negative_prompt) == (
        "640x960",
        2,
        11,
        "Watercolor_V1",
        "blur",
    )
    assert task.seed == -1
    await gen.bot.store.settings.reset(GUILD_A)
    task = await gen.bot.store.tasks.get(await accepted(await imagine(gen, user_id=MEMBER_A2)))
    assert (task.size, task.count, task.scale, task.model) == ("512x512", 2, 7, "Artist_V0.1.3")


async def test_a_failed_task_gives_its_images_back_to_the_quota(gen):
    import time

    from bot.jobs.admission import utc_day

    await gen.bot.store.settings.update(GUILD_A, daily_quota=5)
    gen.emu.state.settings.faults.task_failure_rate = 1.0
    task_id = await accepted(await imagine(gen, count=2))
    await failure_message(gen, task_id)
    day = utc_day(time.time())
    assert await gen.bot.store.usage.get(GUILD_A, MEMBER_A, day) == 0


async def test_status_message_names_the_requester_without_a_ping_and_the_prompt_start(gen):
    prompt = "**bold** fox [free](https://evil.example) @everyone " + "snow " * 100
    task_id = await accepted(await imagine(gen, prompt, count=1))
    await wait_result(gen, task_id)
    task = (await delivered(gen, [task_id]))[0]
    status = await gen.fake.wait_for_message(
        CH_A, lambda m: int(m["id"]) == task.status_message_id and "done" in m["content"]
    )
    content = status["content"]
    assert f"<@{MEMBER_A}>" in content
    assert r"\*\*bold\*\* fox \[free](" in content  # escaped: no formatting, no masked link
    assert "@everyone" not in content.replace("@\u200beveryone", "")
    assert "snow " * 100 not in content and "…" in content  # only the start of the prompt
    status_requests = [
        r
        for r in gen.fake.requests
        if r.path.endswith(f"/messages/{task.status_message_id}")
        or (r.method == "POST" and r.path == f"/channels/{CH_A}/messages" and not r.files)
    ]
    assert status_requests
    for request in status_requests:
        assert request.json["allowed_mentions"] == {"parse": []}


async def test_status_edits_and_results_are_sent_without_building_message_objects(gen, monkeypatch):
    built: list[int] = []  # ids of every discord.Message the bot builds
    views: list[discord.ui.view.BaseView] = []  # every view it builds
    original = discord.Message.__init__
    original_view = discord.ui.view.BaseView.__init__

    def init(self: discord.Message, *, state, channel, data) -> None:  # type: ignore[no-untyped-def]
        built.append(int(data["id"]))
        original(self, state=state, channel=channel, data=data)

    def init_view(self: discord.ui.view.BaseView, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        views.append(self)
        original_view(self, *args, **kwargs)

    monkeypatch.setattr(discord.Message, "__init__", init)
    monkeypatch.setattr(discord.ui.view.BaseView, "__init__", init_view)
    task_id = await accepted(await imagine(gen, "a quiet harbour", count=2))
    result = await wait_result(gen, task_id)
    (task,) = await delivered(gen, [task_id])
    await gen.fake.wait_for_message(
        CH_A, lambda m: int(m["id"]) == task.status_message_id and "done" in m["content"]
    )
    edits = [r for r in gen.fake.requests if r.path.endswith(f"/{task.status_message_id}")]
    assert edits and all(r.method == "PATCH" for r in edits)  # it was edited, to "done"
    # The status message is the command's answer: discord.py builds it once, from the answer's
    # callback response; its edits build none.
    assert built.count(task.status_message_id) == 1
    # The result: its ids are all the bot keeps, and its buttons are dispatched by pattern,
    # so neither a Message nor a View is built for it.
    assert int(result["id"]) not in built and views == []


async def test_a_single_image_is_shown_inside_the_result_embed(gen):
    task_id = await accepted(await imagine(gen, count=1))
    result = await wait_result(gen, task_id)
    (attachment,) = result["attachments"]
    assert result["embeds"][0]["image"]["url"] == f"attachment://{attachment['filename']}"


async def test_a_status_change_after_the_board_closed_sends_nothing(gen):
    # At shutdown the board flushes its edits before discord.py's session closes; a change
    # coming later (a task finishing as the bot stops) must not start a request, or a timer
    # firing into the closed session.
    task_id = await accepted(await imagine(gen, count=1))
    await wait_result(gen, task_id)
    await gen.idle()
    task = await gen.bot.store.tasks.get(task_id)
    board = gen.bot.delivery.status
    await board.close()
    before = len(gen.fake.requests)
    board.show_soon(task, "too late", final=True)
    await board.show(task, "later still", final=True)
    await gen.idle()
    assert len(gen.fake.requests) == before and len(board) == 0


def _status_edits(h, task_id: int, status_message_id: int) -> list[str]:
    """The first line of each text task `task_id`'s status message was edited to."""
    path = f"/channels/{CH_A}/messages/{status_message_id}"
    edits = [r.json["content"] for r in h.fake.requests if r.method == "PATCH" and r.path == path]
    return [text.splitlines()[0].replace(f"#{task_id}", "#N") for text in edits]


@pytest.mark.parametrize(("count_interval", "third_moves_up"), [(0.0, True), (60.0, False)])
async def test_a_place_in_line_moving_up_waits_for_the_count_interval_a_new_state_does_not(
    gen, count_interval, third_moves_up
):
    # One task at a time for the member: the second and third wait in the bot's line. When
    # the first is done the second starts and the third moves up to place 1: a count changing
    # only, held for the count interval; the third's start, a new state, is not held.
    gen.emu.state.settings.generation_time = 0.3
    await gen.bot.store.settings.update(GUILD_A, user_running=1)
    board = gen.bot.delivery.status
    board.interval, board.count_interval = 0.0, count_interval
    answers = [await answer_text(await imagine(gen, f"owl {i}", count=1)) for i in range(3)]
    assert [line.splitlines()[0].split(": ", 1)[-1] for line in answers[1:]] == [
        "position 1 in line.",
        "position 2 in line.",
    ]
    ids = [task_id_of(text) for text in answers]
    for task_id in ids:
        await wait_result(gen, task_id)
    third = await gen.bot.store.tasks.get(ids[2])
    generated, done = "🎨 Task #N is being generated…", "✅ Task #N is done"

    def edits_once_done() -> list[str] | None:
        edits = _status_edits(gen, third.id, third.status_message_id)
        return edits if edits and edits[-1].startswith(done) else None

    edits = await eventually(edits_once_done)
    moved_up = ["⏳ Task #N is queued: position 1 in line."] if third_moves_up else []
    assert edits[:-1] == [*moved_up, generated] and edits[-1].startswith(done)
