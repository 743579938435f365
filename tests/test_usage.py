"""`/usage`: the report's figures, its chart, who may see it, its period and its languages."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.discord_usage import usage_embed
from bot.discord_usage.chart import BAR, HEIGHT, WIDTH, ChartLayout, render_chart
from bot.display import EMBED_TOTAL_MAX
from bot.i18n import LOCALES, catalog, t, tn
from bot.jobs.models import FailReason
from bot.store import Store, Task, TaskState, TrainingState, usage_report
from bot.store.usage_report import (
    POINTS_REASON,
    DayImages,
    FailureCount,
    MemberImages,
    PointsOutage,
    TrainingCounts,
    UsageReport,
    kept_days,
    period_start,
)
from bot.training.reasons import TrainingFailReason
from tests.conftest import ACCOUNTS, ADMIN_A, CH_A, GUILD_A, GUILD_B, MEMBER_A, MEMBER_A2, Harness
from tests.genutil import FAST_POLLING, imagine, task_id_of, wait_result
from tests.helpers import answer, answer_text, is_ephemeral, message_text

DAY = 86_400.0
# 2026-03-10 12:00 UTC: a fixed "now" for the store-level report.
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC).timestamp()


# The chart


def decoded(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png)).convert("RGB")


def bar_pixels(image: Image.Image, layout: ChartLayout, index: int) -> int:
    """How many pixels of the bar colour the column in the middle of bar `index` holds."""
    x0, x1 = layout.slot(index)
    column = (x0 + x1) // 2
    return sum(image.getpixel((column, y)) == BAR for y in range(image.height))


def week(*counts: int) -> list[DayImages]:
    return [DayImages(date(2026, 3, 1 + n), images) for n, images in enumerate(counts)]


def test_the_chart_has_a_bar_for_each_day_with_images_and_is_the_same_every_time():
    days = week(0, 3, 0, 6, 1, 0, 0)
    png = render_chart(days)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)
    layout = ChartLayout(bars=len(days))
    heights = [bar_pixels(decoded(png), layout, n) for n in range(len(days))]
    assert [h > 0 for h in heights] == [d.images > 0 for d in days]
    # The busiest day reaches the top line; the others in proportion, the smallest still shows.
    assert heights[3] == layout.baseline - layout.top
    assert heights[3] > heights[1] > heights[4] >= 2
    assert render_chart(days) == png


def test_a_year_of_days_still_shows_every_day_with_images():
    days = [DayImages(date(2025, 1, 1).fromordinal(738000 + n), n % 3) for n in range(365)]
    image = decoded(render_chart(days))
    layout = ChartLayout(bars=365)
    for n, day in enumerate(days):
        assert (bar_pixels(image, layout, n) > 0) == (day.images > 0), n


def test_a_chart_of_days_without_images_has_no_bar():
    image = decoded(render_chart(week(0, 0)))
    layout = ChartLayout(bars=2)
    assert all(bar_pixels(image, layout, n) == 0 for n in range(2))


# The report, read from the store


class Clock:
    """A clock the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[Store, Clock]]:
    clock = Clock(NOW)
    s = await Store.open(tmp_path / "bot.db", clock=clock)
    yield s, clock
    await s.close()


async def delivered(store: Store, clock: Clock, at: float, user_id: int, images: int) -> None:
    """A task of `user_id` whose `images` images were delivered at `at`."""
    clock.now = at
    task = await store.tasks.create(
        guild_id=GUILD_A,
        channel_id=CH_A,
        user_id=user_id,
        kind="t2i",
        model="m",
        prompt="p",
        count=4,  # the service may return fewer than asked: what it returned counts
        scale=7,
        size="512x512",
    )
    await store.tasks.mark_submitted(task.id, f"svc-{task.id}")
    await store.tasks.mark_done(task.id, [{"url": f"u{n}"} for n in range(images)], 1)
    assert await store.tasks.mark_delivered(task.id, 1)


async def failed(store: Store, clock: Clock, at: float, reason: str, guild_id: int = GUILD_A):
    clock.now = at
    task = await store.tasks.create(
        guild_id=guild_id,
        channel_id=CH_A,
        user_id=MEMBER_A,
        kind="t2i",
        model="m",
        prompt="p",
        count=1,
        scale=7,
        size="512x512",
    )
    assert await store.tasks.mark_failed(task.id, reason)


async def training(store: Store, clock: Clock, start: float, end: float | None, state: str, **kw):
    clock.now = start
    job = await store.trainings.create(
        guild_id=GUILD_A,
        channel_id=CH_A,
        user_id=MEMBER_A,
        name="n",
        main_body="person",
        base_model="b",
        trigger_word="w",
    )
    if end is not None:
        clock.now = end
        assert await store.trainings.set_state(job.id, state, [TrainingState.UPLOADING], **kw)


async def test_the_report_counts_the_period_by_utc_day(store):
    s, clock = store
    today = datetime(2026, 3, 10, tzinfo=UTC).timestamp()
    await delivered(s, clock, today + 60, MEMBER_A, 2)
    await delivered(s, clock, today - 60, MEMBER_A, 3)  # 23:59 UTC the day before
    await delivered(s, clock, today - 2 * DAY, MEMBER_A2, 1)
    await delivered(s, clock, today - 6 * DAY + 1, MEMBER_A2, 4)  # the period's first day
    await delivered(s, clock, today - 6 * DAY - 1, MEMBER_A2, 9)  # before the period
    await failed(s, clock, today - DAY + 5, POINTS_REASON)
    await failed(s, clock, today - DAY + 3600, POINTS_REASON)
    await failed(s, clock, today + 30, "timeout")
    await failed(s, clock, today + 40, POINTS_REASON, guild_id=GUILD_B)  # another server
    await training(s, clock, today - DAY, today - DAY + 7, "failed", error=POINTS_REASON)
    await training(s, clock, today - 30 * DAY, today - 3 * DAY, "done")  # started before
    await training(s, clock, today - 3 * DAY, None, "")  # still running
    clock.now = NOW

    report = await s.usage_report.report(GUILD_A, days=7, top=10)

    first, since = period_start(7, NOW)
    assert (first, since) == (date(2026, 3, 4), today - 6 * DAY)
    assert [(d.day.isoformat(), d.images) for d in report.days] == [
        ("2026-03-04", 4),
        ("2026-03-05", 0),
        ("2026-03-06", 0),
        ("2026-03-07", 0),
        ("2026-03-08", 1),
        ("2026-03-09", 3),
        ("2026-03-10", 2),
    ]
    assert (report.images, report.tasks, report.members, report.busiest) == (10, 4, 2, 4)
    assert [(m.user_id, m.images, m.tasks) for m in report.top_members] == [
        (MEMBER_A, 5, 2),
        (MEMBER_A2, 5, 2),
    ]
    assert [(f.reason, f.tasks) for f in report.failures] == [(POINTS_REASON, 2), ("timeout", 1)]
    assert report.failed_tasks == 3
    assert (report.trainings.started, report.trainings.done, report.trainings.failed) == (2, 1, 1)
    (outage,) = report.points_outages
    assert outage.day == date(2026, 3, 9) and outage.first_at == today - DAY + 5
    assert (outage.tasks, outage.trainings, report.points_outage_days) == (2, 1, 1)


async def test_top_members_and_outages_are_capped_with_the_whole_count_kept(store):
    s, clock = store
    for n in range(12):
        await delivered(s, clock, NOW - n * 60, 5000 + n, n + 1)
        await failed(s, clock, NOW - n * DAY, POINTS_REASON)
    clock.now = NOW
    report = await s.usage_report.report(GUILD_A, days=30, top=10, outages=3)
    assert [m.user_id for m in report.top_members] == [5000 + n for n in range(11, 1, -1)]
    assert report.members == 12
    assert [o.day.day for o in report.points_outages] == [10, 9, 8]
    assert report.points_outage_days == 12


@pytest.mark.parametrize(
    "sql",
    [
        usage_report._IMAGES_PER_DAY,
        usage_report._MEMBERS,
        usage_report._TOP_MEMBERS,
        usage_report._FAILURES,
        usage_report._TRAININGS,
        usage_report._POINTS_OUTAGES,
    ],
)
async def test_every_report_query_finds_its_rows_through_an_index(store, sql):
    s, _ = store
    used = max(int(n) for n in re.findall(r"\?(\d)", sql))  # parameters are ?1, ?2, ...
    params = (GUILD_A, 0.0, POINTS_REASON, 10)[:used]
    plan = await s.db.conn.execute_fetchall(f"EXPLAIN QUERY PLAN {sql}", params)
    # Each read of a table (not of an intermediate result) goes through one of its indexes.
    reads = [row[3] for row in plan if row[3].split()[1:2] in (["tasks"], ["trainings"])]
    assert reads and all(read.startswith("SEARCH") and " USING " in read for read in reads), reads


def test_the_period_is_cut_to_the_whole_days_whose_tasks_are_all_kept():
    assert kept_days(30, 90) == 30
    assert kept_days(120, 90) == 90
    assert kept_days(30, 2.5) == 2  # the third day back began more than 2.5 days ago
    assert kept_days(7, 0.2) == 1  # today, at least


def test_the_points_reason_is_the_one_generation_and_training_store():
    assert POINTS_REASON == FailReason.NOT_ENOUGH_POINTS == TrainingFailReason.NOT_ENOUGH_POINTS


def test_every_failure_reason_has_a_short_name_in_both_languages():
    for locale in LOCALES:
        for reason in [*FailReason, "unknown"]:
            assert f"usage.reason.{reason}" in catalog(locale), (locale, reason)


# The embed


def full_report(failures: tuple[FailureCount, ...]) -> UsageReport:
    """A report with every list at its longest."""
    days = tuple(DayImages(date(2025, 1, 1).fromordinal(738000 + n), n) for n in range(365))
    return UsageReport(
        guild_id=GUILD_A,
        since=0.0,
        days=days,
        images=10**9,
        tasks=10**8,
        members=10**6,
        top_members=tuple(MemberImages(2**63 - n, 10**8, 10**7) for n in range(10)),
        failures=failures,
        trainings=TrainingCounts(10**6, 10**6, 10**6, 10**6),
        points_outages=tuple(PointsOutage(d.day, NOW, 10**6, 10**6) for d in days[:10]),
        points_outage_days=365,
    )


def test_reasons_without_a_short_name_are_counted_together_as_other():
    failures = (
        FailureCount("timeout", 3),
        FailureCount("", 2),
        FailureCount("from_an_older_version", 2),
        FailureCount(POINTS_REASON, 1),
    )
    embed = usage_embed(full_report(failures), "en-US", retention_days=None)
    (field,) = [f for f in embed.fields if f.name == t("usage.failures", "en-US")]
    assert field.value == "Other: 4\nTimed out: 3\nNot enough points: 1"


@pytest.mark.parametrize("locale", LOCALES)
def test_the_longest_report_fits_discord_embed_limits(locale):
    failures = tuple(FailureCount(reason, 10**6) for reason in FailReason)
    embed = usage_embed(full_report(failures), locale, retention_days=36500)
    assert len(embed) <= EMBED_TOTAL_MAX
    assert len(embed.fields) <= 25 and all(len(f.value or "") <= 1024 for f in embed.fields)
    assert len(embed.description or "") <= 4096 and len(embed.title or "") <= 256


# Through Discord


async def wait_state(h: Harness, task_id: int, state: TaskState) -> None:
    """Wait until the store records the task in `state`."""
    for _ in range(500):
        task = await h.bot.store.tasks.get(task_id)
        if task is not None and task.state == state:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"task {task_id} never reached {state}")


async def generate(h: Harness, user_id: int, count: int) -> int:
    task_id = task_id_of(await answer_text(await imagine(h, user_id=user_id, count=count)))
    await wait_result(h, task_id)
    await wait_state(h, task_id, TaskState.DELIVERED)
    return task_id


async def usage(h: Harness, user_id: int = ADMIN_A, locale: str = "en-US", **options: Any):
    """Run /usage; return the interaction, its (ephemeral) answer and the answer's text."""
    ix = await h.fake.slash(
        "usage", user_id=user_id, guild_id=GUILD_A, channel_id=CH_A, options=options, locale=locale
    )
    body = await answer(ix)
    assert is_ephemeral(ix)
    return ix, body, message_text(body)


async def failures(h: Harness) -> list[Task]:
    tasks = await h.bot.store.tasks.recent(GUILD_A, None, 100)
    return [task for task in tasks if task.state == TaskState.FAILED]


def chart_of(h: Harness, ix) -> Image.Image:
    """The chart attached to the answer, decoded, after checking the embed shows it."""
    message = ix.original()
    (attachment,) = message["attachments"]
    assert attachment["filename"] == "usage.png"
    (embed,) = message["embeds"]
    assert embed["image"]["url"] == "attachment://usage.png"
    return Image.open(io.BytesIO(h.fake.world.files[int(attachment["id"])].data))


@pytest.fixture
async def busy(harness_factory) -> Harness:
    """Guild A: MEMBER_A got 2 + 2 images, MEMBER_A2 1, one task failed for points, one
    training failed for points and one finished."""
    h = await harness_factory(miaohua=FAST_POLLING)
    await generate(h, MEMBER_A, 2)
    await generate(h, MEMBER_A2, 1)
    await generate(h, MEMBER_A, 2)
    h.emu.state.accounts[ACCOUNTS[GUILD_A][0]].points = 0
    poor = task_id_of(await answer_text(await imagine(h, user_id=MEMBER_A2, count=1)))
    await wait_state(h, poor, TaskState.FAILED)
    store = h.bot.store
    for state, error in (("failed", POINTS_REASON), ("done", None)):
        job = await store.trainings.create(
            guild_id=GUILD_A,
            channel_id=CH_A,
            user_id=MEMBER_A,
            name="n",
            main_body="person",
            base_model="b",
            trigger_word="w",
        )
        await store.trainings.set_state(job.id, state, [TrainingState.UPLOADING], error=error)
    return h


async def test_admins_get_the_figures_and_the_chart_privately_also_after_a_restart(busy):
    for attempt in range(2):
        ix, body, text = await usage(busy)
        assert tn("usage.title", 30, "en-US") in text
        fields = {f["name"]: f["value"] for f in body["embeds"][0]["fields"]}
        assert fields[t("usage.images", "en-US")] == "5"
        assert fields[t("usage.tasks", "en-US")] == "3"
        assert fields[t("usage.members", "en-US")] == "2"
        assert fields[t("usage.top", "en-US")] == (
            f"1. <@{MEMBER_A}>: 4 images\n2. <@{MEMBER_A2}>: 1 image"
        )
        assert fields[t("usage.failed", "en-US")] == "1"
        assert fields[t("usage.failures", "en-US")] == "Not enough points: 1"
        assert fields[t("usage.trainings", "en-US")] == t(
            "usage.trainings.value", "en-US", started=2, done=1, failed=1, cancelled=0
        )
        points = fields[t("usage.points", "en-US")]
        assert points.endswith("UTC, first of 2 failures that day")
        first = min(task.failed_at for task in await failures(busy))
        assert points.startswith(datetime.fromtimestamp(first, UTC).strftime("%Y-%m-%d %H:%M"))
        assert body["allowed_mentions"] == {"parse": []}
        chart = chart_of(busy, ix).convert("RGB")
        assert chart.size == (WIDTH, HEIGHT)
        layout = ChartLayout(bars=30)
        x0, x1 = layout.slot(29)  # today: the busiest day, up to the top line
        assert chart.getpixel(((x0 + x1) // 2, layout.top + 1)) == BAR
        assert chart.getpixel(((x0 + x1) // 2, layout.baseline - 1)) == BAR
        x0, x1 = layout.slot(28)
        assert chart.getpixel(((x0 + x1) // 2, layout.baseline - 1)) != BAR
        if attempt == 0:
            await busy.restart()


async def test_the_report_in_chinese(busy):
    _, _, text = await usage(busy, locale="zh-CN", days=7)
    assert "最近 7 天的用量" in text
    assert "点数不足：1" in text
    assert f"1. <@{MEMBER_A}>：4 张" in text
    assert t("usage.points", "zh-CN") in text and "当天共失败 2 次" in text


async def test_members_without_manage_server_are_refused(busy):
    ix = await busy.fake.slash("usage", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A)
    assert await answer_text(ix) == t("errors.missing_permissions", "en-US")
    assert is_ephemeral(ix)
    assert not any(m.get("attachments") for m in [ix.original() or {}, *ix.followups])


@pytest.mark.parametrize("days", [0, -3, 366, 10_000])
async def test_a_number_of_days_out_of_range_is_refused_clearly(harness, days):
    ix = await harness.fake.slash(
        "usage", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A, options={"days": days}
    )
    assert await answer_text(ix) == t("usage.bad_days", "en-US", max=365)
    assert is_ephemeral(ix)


async def test_the_period_stops_at_what_the_store_keeps_and_says_so(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING, storage={"retention_days": 3})
    await generate(h, MEMBER_A, 1)
    ix, _, text = await usage(h, days=30)
    assert tn("usage.title", 3, "en-US") in text
    assert t("usage.retention", "en-US", retention="3") in text
    assert chart_of(h, ix).size == (WIDTH, HEIGHT)
    # Within what is kept, nothing is said.
    _, _, text = await usage(h, days=3)
    assert t("usage.retention", "en-US", retention="3") not in text


async def test_a_quiet_server_gets_an_empty_report(harness):
    ix, body, _ = await usage(harness, days=1)
    fields = {f["name"]: f["value"] for f in body["embeds"][0]["fields"]}
    assert fields[t("usage.images", "en-US")] == "0"
    assert fields[t("usage.top", "en-US")] == t("usage.none", "en-US")
    assert fields[t("usage.points", "en-US")] == t("usage.points.none", "en-US")
    assert chart_of(harness, ix).size == (WIDTH, HEIGHT)


async def test_the_chart_is_drawn_off_the_event_loop(harness, monkeypatch):
    drawn_on_loop: list[bool] = []

    def watched(days: Any) -> bytes:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            drawn_on_loop.append(False)
        else:
            drawn_on_loop.append(True)
        return render_chart(days)

    # The module the bot loaded (discord.py imports each extension afresh).
    monkeypatch.setattr(harness.bot.extensions["cogs.usage"], "render_chart", watched)
    ix, _, _ = await usage(harness, days=3)
    assert chart_of(harness, ix).size == (WIDTH, HEIGHT)
    assert drawn_on_loop == [False]
