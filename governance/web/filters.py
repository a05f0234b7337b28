"""Template filters: dates in UTC, states as words, percentages."""

from __future__ import annotations

import base64
from datetime import date, datetime

from flask import Flask
from flask_babel import gettext
from markupsafe import Markup, escape

from ..notify import STEP_TERMS, step_texts
from . import vocabulary


def utc(value: datetime | date | None, with_time: bool = True) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC") if with_time else value.strftime("%Y-%m-%d")
    return value.isoformat()


def words(value: str | None) -> str:
    """``in_review`` → "in review", in the page's language for the values :mod:`.vocabulary` lists."""
    return vocabulary.words(value)


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def svg_image(svg: str | None, alt: str = "") -> Markup:
    """A drawn SVG chart as an image: inline SVG carries style attributes that the pages' Content Security
    Policy (style-src 'self') blocks, which left charts as black boxes; a data: image (img-src allows data:)
    keeps its own styles."""
    if not svg:
        return Markup("")
    encoded = base64.b64encode(str(svg).encode("utf-8")).decode("ascii")
    return Markup('<img class="chart-img" alt="{}" src="data:image/svg+xml;base64,{}">').format(escape(alt), encoded)


def say(reason) -> str:
    """A refusal's reason in the page's language."""
    return vocabulary.say(reason)


def _notice_texts(note) -> tuple[str, str]:
    return step_texts(note.kind, note.subject, gettext,
                      lambda name, value: vocabulary.words(value) if name in STEP_TERMS else value)


def notice(note) -> str:
    """A notification's subject in the page's language (the review steps' ones; others as stored)."""
    return _notice_texts(note)[0]


def notice_text(note) -> str:
    """What a review step's notification says happened and asks the reader to do, in the page's language (empty
    for other notifications: their stored text is all there is)."""
    return _notice_texts(note)[1]


def register(app: Flask) -> None:
    app.add_template_filter(notice, "notice")
    app.add_template_filter(notice_text, "notice_text")
    app.add_template_filter(say, "say")
    app.add_template_filter(utc, "utc")
    app.add_template_filter(words, "words")
    app.add_template_filter(vocabulary.criterion_meaning, "criterion_meaning")
    app.add_template_filter(percent, "percent")
    app.add_template_filter(svg_image, "svg_image")
