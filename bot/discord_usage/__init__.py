"""The Discord side of `/usage`: the chart image and the report embed."""

from bot.discord_usage.chart import CHART_FILENAME, render_chart
from bot.discord_usage.embed import usage_embed

__all__ = ["CHART_FILENAME", "render_chart", "usage_embed"]
