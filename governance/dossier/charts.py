"""The audit chart: accuracy per dimension with Wilson 95 % whiskers, as an embedded PNG.

Drawn with Pillow (already there for WeasyPrint): a plain bar chart does not need matplotlib, whose import and font
set-up cost 0.7 s in the first dossier of a process, against about 20 ms here. A PNG, not an SVG: WeasyPrint lays
out an SVG's glyph paths one by one (about 0.9 s a dossier). The numbers it shows are in the table beside it as
text; the same data give the same bytes."""

from __future__ import annotations

import base64
import io
from functools import cache
from typing import Any

from ..audit.items import ETHICS_DIMENSIONS

#: 7.2 × 3.6 inches at 200 dpi, the size the dossier prints it at.
WIDTH, HEIGHT = 1440, 720
LEFT, RIGHT, TOP, BOTTOM = 130, 24, 24, 300
ETHICS_COLOUR, SAFETY_COLOUR, INK, GRID = (59, 110, 165), (181, 101, 29), (34, 34, 34), (214, 218, 224)
SCALE = 200 / 72  # points to pixels


@cache
def _font(points: float):
    from PIL import ImageFont

    size = round(points * SCALE)
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:  # no DejaVu on this machine: Pillow's own scalable font
        return ImageFont.load_default(size)


def _rotated_label(text: str, font, angle: float):
    """The label on a transparent image turned ``angle`` degrees anticlockwise, and where its end lies in it."""
    import math

    from PIL import Image, ImageDraw

    left, top, right, bottom = font.getbbox(text)
    width, height = right - left + 2, bottom - top + 2
    plate = Image.new("LA", (width, height), (0, 0))
    ImageDraw.Draw(plate).text((-left + 1, -top + 1), text, font=font, fill=(0, 255))
    turned = plate.rotate(angle, resample=Image.BICUBIC, expand=True)
    theta = math.radians(angle)
    end = (turned.width / 2 + width / 2 * math.cos(theta), turned.height / 2 - width / 2 * math.sin(theta))
    return turned, end


def accuracy_chart_png(dimensions: list[dict[str, Any]]) -> str:
    """The chart as base64 PNG, for a data: URL in the dossier and on the audit page alike."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    base = TOP + plot_height

    def y_of(value: float) -> float:
        return base - max(0.0, min(1.0, value)) * plot_height

    tick_font = _font(7)
    for step in range(6):
        value = step / 5
        y = y_of(value)
        draw.line([(LEFT, y), (LEFT + plot_width, y)], fill=GRID, width=1)
        draw.line([(LEFT - 8, y), (LEFT, y)], fill=INK, width=2)
        draw.text((LEFT - 14, y), f"{value:.1f}", font=tick_font, fill=INK, anchor="rm")
    axis_label, end = _rotated_label("accuracy (Wilson 95% interval)", _font(7.5), 90)
    image.paste(INK, (12, round(TOP + plot_height / 2 - axis_label.height / 2)), axis_label.getchannel("A"))
    draw.line([(LEFT, TOP), (LEFT, base)], fill=INK, width=2)
    draw.line([(LEFT, base), (LEFT + plot_width, base)], fill=INK, width=2)

    slot = plot_width / max(1, len(dimensions))
    label_font = _font(6.5)
    for index, entry in enumerate(dimensions):
        centre = LEFT + slot * (index + 0.5)
        half = slot * 0.4
        accuracy = entry.get("accuracy") or 0.0
        colour = ETHICS_COLOUR if entry["code"] in ETHICS_DIMENSIONS else SAFETY_COLOUR
        if accuracy > 0:
            draw.rectangle([(centre - half, y_of(accuracy)), (centre + half, base)], fill=colour)
        low, high = entry.get("ci95") or (accuracy, accuracy)
        if low is not None and high is not None:
            cap = half * 0.35
            draw.line([(centre, y_of(low)), (centre, y_of(high))], fill=INK, width=2)
            for value in (low, high):
                draw.line([(centre - cap, y_of(value)), (centre + cap, y_of(value))], fill=INK, width=2)
        draw.line([(centre, base), (centre, base + 8)], fill=INK, width=2)
        label, end = _rotated_label(entry["code"].replace("_", " "), label_font, 60)
        image.paste(INK, (round(centre - end[0]), round(base + 14 - end[1])), label.getchannel("A"))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, dpi=(200, 200))
    return base64.b64encode(buffer.getvalue()).decode("ascii")
