"""Applied Model Cards (CHAI schema v0.2) for approved model versions, exported as validated XML or as JSON
with the same content, so hospitals can hand the ethics committee's findings to others."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .chai import NAMESPACE, SCHEMA_VERSION, ModelCardInvalid, to_element, to_xml, validate
from .content import NOT_PROVIDED, ModelCardRefused, build_card, find_version

if TYPE_CHECKING:
    from sqlmodel import Session

    from ..config import Settings
    from ..models import Deployment

FORMATS = ("chai-xml", "json")

__all__ = ["FORMATS", "NAMESPACE", "NOT_PROVIDED", "SCHEMA_VERSION", "ModelCardInvalid", "ModelCardRefused",
           "build_card", "export", "find_version", "to_element", "to_json", "to_xml", "validate"]


def to_json(card: dict[str, Any]) -> bytes:
    """The JSON document: the card under ``AppliedModelCard`` with the schema's element names, validated as XML
    first so both formats carry the same checked content."""
    validate(to_element(card))
    document = {"schema": f"CHAI Applied Model Card {SCHEMA_VERSION}", "namespace": NAMESPACE,
                "AppliedModelCard": card}
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def export(session: Session, settings: Settings, deployment: Deployment, version: str | None,
           fmt: str) -> tuple[str, bytes]:
    """The version label and the document of an approved version's card in ``fmt``."""
    found = find_version(session, deployment, version)
    card = build_card(session, settings, deployment, found)
    return found.version_label, to_xml(card) if fmt == "chai-xml" else to_json(card)
