"""`/history`: a member's own results, five per page, ◀ ▶ after restarts, search, privacy."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import pytest

from bot.discord_jobs.history import SEARCH_MAX, HistoryButton, HistoryQuery, custom_id
from bot.i18n import t, tn
from bot.store import Store, TaskState
from bot.store.history import fold
from tests.conftest import (
    ADMIN_A,
    CH_A,
    CH_B,
    GUILD_A,
    GUILD_B,
    MEMBER_A,
    MEMBER_A2,
    Harness,
)
from tests.genutil import FAST_POLLING, imagine, result_of, task_id_of
from tests.helpers import answer, answer_text, is_ephemeral

# MEMBER_A's results in GUILD_A, oldest first; the searches below pick among them.
PROMPTS = [
    "a red fox in the snow",
    "100% cotton shirt on a hanger",
    "1000 cotton shirts with a fox print",
    "a fox cub asleep",
    "snake_case street sign",
    "snake case street sign",
    "CAFÉ at night, neon",
    "赛博朋克城市夜景",
    "an arctic fox on ice",
    "**bold** fox @everyone [free nitro](https://evil.example)",
    "STRASSE in Berlin, a fox at dawn",
    "a fox and a hound",
]
FOXES = [1, 3, 4, 9, 10, 11, 12]  # 1-based positions in PROMPTS whose prompt names a fox
TITLE = re.compile(r"#(\d+)")


async def delivered(h: Harness, task_id: int) -> None:
    """Wait until the task's result is posted and recorded."""
    for _ in range(500):
        task = await h.bot.store.tasks.get(task_id)
        if task.state in (TaskState.DELIVERED, TaskState.FAILED):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"task {task_id} did not finish")


async def generate(h: Harness, prompt: str, **where: Any) -> int:
    """Run /imagine (one image) and wait until its result is delivered; return the task id."""
    ix = await imagine(h, prompt, count=1, **where)
    task_id = task_id_of(await answer_text(ix))
    await delivered(h, task_id)
    return task_id


@pytest.fixture
async def hist(harness_factory) -> Harness:
    """MEMBER_A has the 12 results of PROMPTS (ids in `h.mine`, oldest first) and one failed
    task after them; MEMBER_A2 has a result in between, and MEMBER_A one in GUILD_B."""
    h = await harness_factory(miaohua=FAST_POLLING)
    # Fourteen results and their status messages in one channel: Discord's limits with
    # windows a tenth as long, or the setup spends half a minute waiting them out.
    h.fake.rate_limits.scale = 0.1
    h.fake.add_member(GUILD_B, MEMBER_A, "member-a")
    h.mine = []
    for number, prompt in enumerate(PROMPTS, 1):
        h.mine.append(await generate(h, prompt))
        if number == 6:
            h.other = await generate(h, "a fox by someone else", user_id=MEMBER_A2)
    h.elsewhere = await generate(h, "a fox in another server", guild_id=GUILD_B, channel_id=CH_B)
    h.emu.state.settings.faults.task_failure_rate = 1.0
    h.failed = await generate(h, "a fox that failed")
    h.emu.state.settings.faults.task_failure_rate = 0.0
    assert (await h.bot.store.tasks.get(h.failed)).state == TaskState.FAILED
    return h


async def history(
    h: Harness,
    user_id: int = MEMBER_A,
    *,
    guild_id: int = GUILD_A,
    locale: str = "en-US",
    **options: Any,
) -> dict[str, Any]:
    """Run /history and return the (private) message it answered with."""
    ix = await h.fake.slash(
        "history",
        user_id=user_id,
        guild_id=guild_id,
        channel_id=CH_A if guild_id == GUILD_A else CH_B,
        options=options,
        locale=locale,
    )
    await answer(ix)
    assert is_ephemeral(ix)
    message = ix.original()
    assert message is not None
    return message


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for row in message.get("components") or [] for c in row["components"]]


def button(message: dict[str, Any], arrow: str) -> dict[str, Any]:
    (found,) = [b for b in buttons(message) if arrow in b["label"]]
    return found


async def turn(
    h: Harness, message: dict[str, Any], arrow: str, user_id: int = MEMBER_A
) -> dict[str, Any]:
    """Click ◀ or ▶ on a history message; return the message as the click left it."""
    ix = await h.fake.click(
        message, button(message, arrow)["custom_id"], user_id=user_id, guild_id=GUILD_A,
        channel_id=CH_A,
    )  # fmt: skip
    body = await ix.response()
    assert body["type"] == 7, body  # the page is replaced in place, not posted anew
    again = h.fake.message(int(message["id"]))
    assert again is not None
    return again


def shown_ids(message: dict[str, Any]) -> list[int]:
    """The task numbers of the entries, top to bottom."""
    return [int(TITLE.search(e["title"])[1]) for e in message.get("embeds") or []]


def ids_at(h: Harness, positions: list[int]) -> list[int]:
    """MEMBER_A's task ids at 1-based PROMPTS positions, newest first."""
    return sorted((h.mine[p - 1] for p in positions), reverse=True)


def header(count: int, page: int, pages: int, search: str | None = None) -> str:
    if search is None:
        return tn("history.header", count, "en-US", page=page, pages=pages)
    return tn("history.header.search", count, "en-US", page=page, pages=pages, search=search)


async def test_pages_of_five_newest_first_with_links_dates_and_thumbnails(hist):
    h = hist
    first = await history(h)
    assert first["content"] == header(12, 1, 3)
    assert shown_ids(first) == h.mine[::-1][:5]  # no failed task, nobody else's
    async with aiohttp.ClientSession() as http:
        for embed, task_id in zip(first["embeds"], shown_ids(first), strict=True):
            task = await h.bot.store.tasks.get(task_id)
            (posted,) = result_of(h, task_id)
            link = f"https://discord.com/channels/{GUILD_A}/{CH_A}/{posted['id']}"
            assert embed["url"] == link and f"]({link})" in embed["description"]
            assert f"<t:{int(task.delivered_at)}:f>" in embed["description"]
            # The thumbnail is the service's preview of the image, and it is there.
            assert embed["thumbnail"]["url"] == task.images[0]["middle"]
            async with http.get(embed["thumbnail"]["url"]) as got:
                assert got.status == 200 and got.content_type == "image/jpeg"
    # A prompt is shown literally: no formatting, no mention, no masked link.
    (bold,) = [e for e in first["embeds"] if "bold" in e["description"]]
    assert r"\*\*bold\*\*" in bold["description"] and "@everyone" not in bold["description"]
    assert r"\[free nitro](https:" in bold["description"]  # an escaped [ is no link
    newer, older = button(first, "◀"), button(first, "▶")
    assert newer.get("disabled") is True and not older.get("disabled")


async def test_arrows_turn_pages_and_are_disabled_at_the_ends(hist):
    h = hist
    newest_first = h.mine[::-1]
    message = await history(h)
    message = await turn(h, message, "▶")
    assert shown_ids(message) == newest_first[5:10]
    assert message["content"] == header(12, 2, 3)
    assert not button(message, "◀").get("disabled") and not button(message, "▶").get("disabled")
    message = await turn(h, message, "▶")
    assert shown_ids(message) == newest_first[10:]
    assert message["content"] == header(12, 3, 3)
    assert button(message, "▶").get("disabled") is True
    message = await turn(h, message, "◀")
    assert shown_ids(message) == newest_first[5:10]
    message = await turn(h, message, "◀")
    assert shown_ids(message) == newest_first[:5]
    assert button(message, "◀").get("disabled") is True
    assert message["flags"] & 64  # still private


async def test_arrows_keep_working_after_a_restart(hist):
    h = hist
    newest_first = h.mine[::-1]
    message = await history(h)
    await h.restart()
    message = await turn(h, message, "▶")
    assert shown_ids(message) == newest_first[5:10]
    await h.restart()
    message = await turn(h, message, "◀")
    assert shown_ids(message) == newest_first[:5]


async def test_search_is_literal_case_insensitive_and_unicode_aware(hist):
    h = hist
    cases = {
        "100%": [2],  # a literal %, not LIKE's wildcard: "1000 cotton" does not match
        "e_c": [5],  # a literal _, not "any character": "snake case" does not match
        "café": [7],  # É folds to é (SQLite's lower() folds ASCII only)
        "straße": [11],  # ß folds to ss
        "朋克": [8],
        "  COTTON ": [2, 3],  # surrounding spaces dropped, case ignored
    }
    for search, positions in cases.items():
        message = await history(h, search=search)
        assert shown_ids(message) == ids_at(h, positions), search
        assert message["content"] == header(len(positions), 1, 1, search.strip())
        assert buttons(message) == []  # one page: no arrows


async def test_search_pages_keep_their_filter_also_after_a_restart(hist):
    h = hist
    foxes = ids_at(h, FOXES)
    message = await history(h, search="ＦＯＸ")  # full-width letters read as FOX
    assert shown_ids(message) == foxes[:5]
    assert message["content"] == header(7, 1, 2, "ＦＯＸ")
    await h.restart()
    message = await turn(h, message, "▶")
    assert shown_ids(message) == foxes[5:]
    assert message["content"] == header(7, 2, 2, "ＦＯＸ")
    message = await turn(h, message, "◀")
    assert shown_ids(message) == foxes[:5]


async def test_only_the_members_own_results_in_this_server(hist):
    h = hist
    seen: list[int] = []
    message = await history(h)
    seen += shown_ids(message)
    while not button(message, "▶").get("disabled"):
        message = await turn(h, message, "▶")
        seen += shown_ids(message)
    assert seen == h.mine[::-1]
    assert h.other not in seen and h.elsewhere not in seen and h.failed not in seen
    other = await history(h, MEMBER_A2)
    assert shown_ids(other) == [h.other] and buttons(other) == []
    elsewhere = await history(h, guild_id=GUILD_B)
    assert shown_ids(elsewhere) == [h.elsewhere]


async def test_another_member_cannot_turn_the_pages(hist):
    h = hist
    message = await history(h)
    ix = await h.fake.click(
        message, button(message, "▶")["custom_id"], user_id=MEMBER_A2, guild_id=GUILD_A,
        channel_id=CH_A,
    )  # fmt: skip
    assert await answer_text(ix) == t("history.not_yours", "en-US")
    assert is_ephemeral(ix)
    assert shown_ids(h.fake.message(int(message["id"]))) == h.mine[::-1][:5]


async def test_nothing_yet_and_no_match_are_said_plainly(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING)
    empty = await history(h, ADMIN_A)
    assert empty["content"] == t("history.empty", "en-US")
    assert empty.get("embeds") == [] and buttons(empty) == []
    await generate(h, "a quiet lake", user_id=ADMIN_A)
    none = await history(h, ADMIN_A, search="50% `off`")
    assert none["content"] == t("history.no_match", "en-US", search="50% ˋoffˋ")
    assert none.get("embeds") == []
    zh = await history(h, ADMIN_A, locale="zh-CN", search="zebra")
    assert zh["content"] == t("history.no_match", "zh-CN", search="zebra")


async def test_history_speaks_chinese(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING)
    ids = [await generate(h, f"湖边的小屋 {n}") for n in range(6)]
    message = await history(h, locale="zh-CN", search="小屋")
    assert message["content"] == tn(
        "history.header.search", 6, "zh-CN", page=1, pages=2, search="小屋"
    )
    assert "第 1/2 页" in message["content"]
    assert [e["title"] for e in message["embeds"]] == [f"任务 #{i}" for i in ids[::-1][:5]]
    assert all(t("history.open", "zh-CN") in e["description"] for e in message["embeds"])
    assert [b["label"] for b in buttons(message)] == ["◀ 较新", "较早 ▶"]
    ix = await h.fake.click(
        message, button(message, "▶")["custom_id"], user_id=MEMBER_A, guild_id=GUILD_A,
        channel_id=CH_A, locale="zh-CN",
    )  # fmt: skip
    await ix.response()
    assert shown_ids(h.fake.message(int(message["id"]))) == [ids[0]]


async def test_a_result_sent_by_direct_message_links_to_the_dm(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING)
    store = h.bot.store
    task = await store.tasks.create(
        guild_id=GUILD_A, channel_id=CH_A, user_id=MEMBER_A, kind="t2i", model="m",
        prompt="sent privately", count=1, scale=7, size="512x512", delivery="dm",
    )  # fmt: skip
    image = {"large": "http://127.0.0.1:9/x.jpg", "middle": "http://127.0.0.1:9/x.mid.jpg"}
    await store.tasks.mark_submitted(task.id, "svc-1")
    await store.tasks.mark_done(task.id, [image], 1)
    await store.tasks.mark_delivered(task.id, 777)
    message = await history(h)
    (embed,) = message["embeds"]
    dm = h.fake.world.dm_by_user[MEMBER_A]
    assert embed["url"] == f"https://discord.com/channels/@me/{dm}/777"
    assert embed["thumbnail"]["url"] == image["middle"]


def test_the_longest_custom_id_fits_and_reads_back():
    search = "日:\n%_" + "x" * (SEARCH_MAX - 5)
    query = HistoryQuery(2**64 - 1, search)
    made = custom_id(query, "o", 2**63 - 1)
    assert len(made) <= 100
    match = HistoryButton.__discord_ui_compiled_template__.fullmatch(made)
    assert match is not None
    assert (int(match["owner"]), match["way"], match["search"]) == (2**64 - 1, "o", search)


def test_fold_ignores_case_and_width_beyond_ascii():
    assert fold("CAFÉ ＦＯＸ Straße") == fold("café fox STRASSE") == "café fox strasse"
    assert fold(None) is None


async def test_keyset_pages_stay_put_while_new_results_arrive(tmp_path):
    store = await Store.open(tmp_path / "db.sqlite3")
    try:
        ids = [await _delivered(store, f"p{n}") for n in range(11)]
        first = await store.history.older(GUILD_A, MEMBER_A, size=5)
        assert [task.id for task in first.tasks] == ids[::-1][:5]
        assert (first.newer, first.total, first.has_older) == (0, 11, True)
        await _delivered(store, "arrived meanwhile")
        second = await store.history.older(GUILD_A, MEMBER_A, before=first.tasks[-1].id, size=5)
        assert [task.id for task in second.tasks] == ids[::-1][5:10]  # nothing shown twice
        assert (second.newer, second.total) == (6, 12)
        last = await store.history.older(GUILD_A, MEMBER_A, before=second.tasks[-1].id, size=5)
        assert [task.id for task in last.tasks] == [ids[0]] and not last.has_older
        # Back from a page near the start: the newest page, full, not a short one.
        back = await store.history.newer(GUILD_A, MEMBER_A, after=ids[8], size=5)
        assert len(back.tasks) == 5 and not back.has_newer
        # Past the end (those results were deleted meanwhile): the newest page, not nothing.
        gone = await store.history.older(GUILD_A, MEMBER_A, before=ids[0], size=5)
        assert len(gone.tasks) == 5 and not gone.has_newer
    finally:
        await store.close()


async def _delivered(store: Store, prompt: str) -> int:
    task = await store.tasks.create(
        guild_id=GUILD_A, channel_id=CH_A, user_id=MEMBER_A, kind="t2i", model="m",
        prompt=prompt, count=1, scale=7, size="512x512",
    )  # fmt: skip
    await store.tasks.mark_submitted(task.id, f"svc-{task.id}")
    await store.tasks.mark_done(task.id, [], 1)
    await store.tasks.mark_delivered(task.id, 10_000 + task.id)
    return task.id


async def test_a_styled_result_shows_and_matches_the_members_own_words(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING)
    task = await h.bot.store.tasks.create(
        guild_id=GUILD_A, channel_id=CH_A, user_id=MEMBER_A, kind="t2i", model="m",
        prompt="masterpiece, watercolour, a cat on a roof", member_prompt="a cat on a roof",
        style="Watercolour", count=1, scale=7, size="512x512",
    )  # fmt: skip
    await h.bot.store.tasks.mark_submitted(task.id, "svc-1")
    await h.bot.store.tasks.mark_done(task.id, [], 1)
    await h.bot.store.tasks.mark_delivered(task.id, 778)
    (embed,) = (await history(h, search="CAT"))["embeds"]
    assert embed["description"].startswith("a cat on a roof\n")
    assert "thumbnail" not in embed  # no image known: no thumbnail rather than a broken one
    none = await history(h, search="masterpiece")
    assert none["content"] == t("history.no_match", "en-US", search="masterpiece")
