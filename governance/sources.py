"""Where a rule comes from, and how sure the project is of it (shown in every output that uses it)."""

from __future__ import annotations

from typing import Literal

from .datafiles import StrictModel

Certainty = Literal["primary", "secondary", "unverified"]


class Source(StrictModel):
    instrument: str
    article: str = ""
    url: str = ""
    certainty: Certainty

    def cite(self) -> str:
        return f"{self.instrument}, {self.article}" if self.article else self.instrument


class Text(StrictModel):
    """A bilingual text."""

    en: str
    zh: str

    def get(self, lang: str) -> str:
        return self.zh if lang.startswith("zh") else self.en
