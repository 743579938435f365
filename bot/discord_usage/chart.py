"""The bar chart of images per UTC day, drawn with Pillow (CPU work: run it off the loop).

Only numbers and ISO dates are written on it, so the bundled font serves every language.
The same days always give the same PNG bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from bot.store.usage_report import DayImages

CHART_FILENAME = "usage.png"
WIDTH, HEIGHT = 960, 320
# Discord's dark theme, and the bot's embed colour for the bars.
BACKGROUND = (43, 45, 49)
GRID = (78, 80, 88)
TEXT = (219, 222, 225)
BAR = (108, 92, 231)
FONT_SIZE = 13
# Room for the value labels on the left and the dates below.
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 20, 20, 36
_DATE_LABEL_ROOM = 110  # pixels per date label, so that neighbours never touch
BAR_MAX = 48  # a bar of few days stays a bar, not a block

# load_default() gives the bundled FreeType font, or a bitmap one where FreeType is missing.
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True, slots=True)
class ChartLayout:
    """Where the plot area and each day's bar are, in pixels."""

    bars: int
    left: int = _LEFT
    top: int = _TOP
    right: int = WIDTH - _RIGHT
    baseline: int = HEIGHT - _BOTTOM

    def slot(self, index: int) -> tuple[int, int]:
        """The first and last pixel column of bar `index`, centred in its share of the width.

        Bars get a gap when there is room for one, and are at most `BAR_MAX` wide.
        """
        width = (self.right - self.left) / self.bars
        x0 = self.left + round(index * width)
        x1 = self.left + round((index + 1) * width) - 1
        if x1 - x0 + 1 > BAR_MAX:
            x0 += (x1 - x0 + 1 - BAR_MAX) // 2
            return x0, x0 + BAR_MAX - 1
        gap = 1 if width >= 4 else 0
        return x0 + gap, max(x0 + gap, x1 - gap)

    def bar_top(self, value: int, peak: int) -> int:
        """The top pixel row of a bar of `value` (a non-zero bar is at least 2 pixels tall)."""
        if value <= 0 or peak <= 0:
            return self.baseline
        height = round((self.baseline - self.top) * value / peak)
        return self.baseline - max(2, height)

    def labelled(self) -> list[int]:
        """Indices of the bars whose date is written: first, last and evenly between."""
        fits = max(2, (self.right - self.left) // _DATE_LABEL_ROOM)
        count = min(self.bars, fits)
        if count == 1:
            return [0]
        return sorted({round(k * (self.bars - 1) / (count - 1)) for k in range(count)})


def render_chart(days: Sequence[DayImages]) -> bytes:
    """A PNG bar chart of images per day, with the busiest day's count on the value axis."""
    if not days:
        raise ValueError("a chart needs at least one day")
    layout = ChartLayout(bars=len(days))
    peak = max(day.images for day in days)
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=FONT_SIZE)
    _value_axis(draw, font, layout, peak)
    for index, day in enumerate(days):
        if day.images > 0:
            x0, x1 = layout.slot(index)
            draw.rectangle((x0, layout.bar_top(day.images, peak), x1, layout.baseline - 1), BAR)
    _date_axis(draw, font, layout, days)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def _value_axis(draw: ImageDraw.ImageDraw, font: Font, layout: ChartLayout, peak: int) -> None:
    """The baseline marked 0 and, above it, a line at the busiest day's count."""
    draw.line((layout.left, layout.baseline, layout.right, layout.baseline), GRID)
    _right_aligned(draw, font, "0", layout.left - 8, layout.baseline)
    if peak > 0:
        draw.line((layout.left, layout.top, layout.right, layout.top), GRID)
        _right_aligned(draw, font, str(peak), layout.left - 8, layout.top)


def _right_aligned(draw: ImageDraw.ImageDraw, font: Font, text: str, x: int, y: int) -> None:
    draw.text((x, y), text, fill=TEXT, font=font, anchor="rm")


def _date_axis(
    draw: ImageDraw.ImageDraw,
    font: Font,
    layout: ChartLayout,
    days: Sequence[DayImages],
) -> None:
    """ISO dates under the labelled bars, each kept inside the image."""
    for index in layout.labelled():
        x0, x1 = layout.slot(index)
        text = days[index].day.isoformat()
        half = draw.textlength(text, font=font) / 2
        centre = min(max((x0 + x1) / 2, half + 2), WIDTH - half - 2)
        draw.line(((x0 + x1) / 2, layout.baseline, (x0 + x1) / 2, layout.baseline + 4), GRID)
        draw.text((centre, layout.baseline + 8), text, fill=TEXT, font=font, anchor="mt")
