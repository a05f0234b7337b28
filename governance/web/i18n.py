"""The one place that decides a request's language.

The interface offers two locale codes, ``en`` and ``zh_CN`` (the cookie the header switch sets, else the
browser's Accept-Language, else the instance's ``default_locale``). Flask-Babel parses the chosen code into a
:class:`babel.Locale`, and Babel adds the likely script: ``zh_CN`` comes back as ``zh_Hans_CN``, which is why
comparing ``str(get_locale())`` with ``"zh_CN"`` never matched. Everything that picks one side of bilingual data
(``{en: …, zh: …}`` in ``checklists/`` and ``regulations/``) asks :func:`page_language` for the project's
language code, ``"zh"`` or ``"en"``, and nothing else compares locales.
"""

from __future__ import annotations

from flask import current_app, has_request_context, request
from flask_babel import get_locale
from flask_login import current_user

from ..languages import LOCALE_OF, LOCALES, Language, language_of  # noqa: F401  (the web's names for them)

def select_locale() -> str:
    """Flask-Babel's locale selector: the ``locale`` cookie if it is one of :data:`LOCALES` (the header's switch),
    else the signed-in person's own language, else the best match of Accept-Language, else the instance's
    ``default_locale``."""
    chosen = request.cookies.get("locale")
    if chosen in LOCALES:
        return chosen
    if current_user and getattr(current_user, "is_authenticated", False) and current_user.language in LOCALES:
        return current_user.language
    settings = current_app.config.get("GOVERNANCE")
    default = getattr(settings, "default_locale", "en")
    return request.accept_languages.best_match(LOCALES) or (default if default in LOCALES else "en")


def page_language() -> Language:
    """The language of the current request's pages and texts (``"en"`` outside a request)."""
    if not has_request_context():
        return "en"
    return language_of(get_locale())
