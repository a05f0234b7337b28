"""Languages, decided in one place: the project's language codes and the locale codes the interface offers.

:func:`language_of` turns any locale (Babel's parsed one, a cookie's code, a person's saved choice) into ``"zh"``
or ``"en"``; the request's language is chosen in :mod:`governance.web.i18n`, an e-mail's by the recipient's
choice (:mod:`governance.notify`); nothing else compares locales.
"""

from __future__ import annotations

from typing import Literal

from babel import Locale, UnknownLocaleError

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
