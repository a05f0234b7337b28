"""The one place that decides a request's language.

The interface offers two locale codes, ``en`` and ``zh_CN`` (the cookie the header switch sets, else the
browser's Accept-Language, else the instance's ``default_locale``). Flask-Babel parses the chosen code into a
:class:`babel.Locale`, and Babel adds the likely script: ``zh_CN`` comes back as ``zh_Hans_CN``, which is why
comparing ``str(get_locale())`` with ``"zh_CN"`` never matched. Everything that picks one side of bilingual data
(``{en: …, zh: …}`` in ``checklists/`` and ``regulations/``) asks :func:`page_language` for the project's
language code, ``"zh"`` or ``"en"``, and nothing else compares locales.
"""

from __future__ import annotations

from typing import Literal

from babel import Locale, UnknownLocaleError
from flask import current_app, has_request_context, request
from flask_babel import get_locale

Language = Literal["en", "zh"]
#: The locale codes the interface offers (the cookie's values; ``zh_CN`` is Simplified Chinese).
LOCALES = ("en", "zh_CN")
#: The locale code of each language, for links that switch to it.
LOCALE_OF: dict[str, str] = {"en": "en", "zh": "zh_CN"}


def language_of(locale: Locale | str | None) -> Language:
    """``"zh"`` for any Chinese locale (``zh``, ``zh_CN``, ``zh_Hans``, ``zh_Hans_CN``, ``zh-CN``…), else ``"en"``
    (English is the interface's source language and the fallback for a locale it does not speak)."""
    if locale is None:
        return "en"
    if not isinstance(locale, Locale):
        text = str(locale).strip().replace("-", "_")
        try:
            locale = Locale.parse(text)
        except (ValueError, TypeError, UnknownLocaleError):
            return "zh" if text.split("_", 1)[0].lower() == "zh" else "en"
    return "zh" if locale.language == "zh" else "en"


def select_locale() -> str:
    """Flask-Babel's locale selector: the ``locale`` cookie if it is one of :data:`LOCALES`, else the best match
    of Accept-Language, else the instance's ``default_locale``."""
    chosen = request.cookies.get("locale")
    if chosen in LOCALES:
        return chosen
    settings = current_app.config.get("GOVERNANCE")
    default = getattr(settings, "default_locale", "en")
    return request.accept_languages.best_match(LOCALES) or (default if default in LOCALES else "en")


def page_language() -> Language:
    """The language of the current request's pages and texts (``"en"`` outside a request)."""
    if not has_request_context():
        return "en"
    return language_of(get_locale())
