"""The `/usage` embed: totals, top members, failures, trainings and points outages."""

from __future__ import annotations

from datetime import UTC, datetime

import discord

from bot.discord_jobs.render import EMBED_COLOUR
from bot.discord_usage.chart import CHART_FILENAME
from bot.display import FIELD_VALUE_MAX, clip, fit_embed
from bot.i18n import catalog, t, tn
from bot.store.usage_report import UsageReport


def usage_embed(report: UsageReport, locale: str, *, retention_days: float | None) -> discord.Embed:
    """The report as an embed showing the chart attachment.

    `retention_days` is given when the period asked for reaches past what the store keeps.
    """
    days = report.days
    description = t(
        "usage.period",
        locale,
        first=days[0].day.isoformat(),
        last=days[-1].day.isoformat(),
        peak=report.busiest,
    )
    if retention_days is not None:
        description += "\n" + t("usage.retention", locale, retention=f"{retention_days:g}")
    embed = discord.Embed(
        title=tn("usage.title", len(days), locale), description=description, colour=EMBED_COLOUR
    )
    embed.add_field(name=t("usage.images", locale), value=str(report.images))
    embed.add_field(name=t("usage.tasks", locale), value=str(report.tasks))
    embed.add_field(name=t("usage.members", locale), value=str(report.members))
    embed.add_field(name=t("usage.top", locale), value=_top(report, locale), inline=False)
    embed.add_field(name=t("usage.failed", locale), value=str(report.failed_tasks))
    embed.add_field(name=t("usage.failures", locale), value=_failures(report, locale))
    trainings = report.trainings
    embed.add_field(
        name=t("usage.trainings", locale),
        value=t(
            "usage.trainings.value",
            locale,
            started=trainings.started,
            done=trainings.done,
            failed=trainings.failed,
            cancelled=trainings.cancelled,
        ),
        inline=False,
    )
    embed.add_field(name=t("usage.points", locale), value=_outages(report, locale), inline=False)
    embed.set_image(url=f"attachment://{CHART_FILENAME}")
    return fit_embed(embed)


def _lines(lines: list[str], locale: str) -> str:
    return clip("\n".join(lines), FIELD_VALUE_MAX) if lines else t("usage.none", locale)


def _top(report: UsageReport, locale: str) -> str:
    # Mentions show the member's name; the reply is sent without allowed mentions.
    return _lines(
        [
            tn("usage.top.line", member.images, locale, rank=rank, user=f"<@{member.user_id}>")
            for rank, member in enumerate(report.top_members, start=1)
        ],
        locale,
    )


def _known(reason: str) -> str:
    """The reason code itself when it has a short name, else "unknown" (codes of older versions)."""
    return reason if f"usage.reason.{reason}" in catalog("en-US") else "unknown"


def _failures(report: UsageReport, locale: str) -> str:
    counts: dict[str, int] = {}
    for failure in report.failures:
        reason = _known(failure.reason)
        counts[reason] = counts.get(reason, 0) + failure.tasks
    ranked = sorted(counts.items(), key=lambda item: -item[1])  # stable: ties keep their order
    return _lines(
        [
            t("usage.failures.line", locale, reason=t(f"usage.reason.{r}", locale), count=n)
            for r, n in ranked
        ],
        locale,
    )


def _outages(report: UsageReport, locale: str) -> str:
    if not report.points_outages:
        return t("usage.points.none", locale)
    lines = [
        tn(
            "usage.points.line",
            outage.tasks + outage.trainings,
            locale,
            time=datetime.fromtimestamp(outage.first_at, UTC).strftime("%Y-%m-%d %H:%M"),
        )
        for outage in report.points_outages
    ]
    more = report.points_outage_days - len(report.points_outages)
    if more > 0:
        lines.append(tn("usage.points.more", more, locale))
    return _lines(lines, locale)
