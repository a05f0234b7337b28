"""CHAI Applied Model Card v0.2 as XML: serialise a card (nested dicts in the schema's element order) and
validate it against the vendored XSD, offline. A card that does not validate is never written."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from lxml import etree

from ..errors import GovernanceError

NAMESPACE = "https://mc.chai.org/v0.2/schema.xsd"
SCHEMA_VERSION = "v0.2"
STANDARDS_DIR = Path(__file__).resolve().parent / "standards"
SCHEMA_FILE = STANDARDS_DIR / "schema-v0.2.xsd"
#: The CHAI schema imports the W3C signature schema by URL; validation must not reach the network.
_IMPORTED_SCHEMAS = {"http://www.w3.org/TR/xmldsig-core/xmldsig-core-schema.xsd":
                     STANDARDS_DIR / "xmldsig-signature-stub.xsd"}
#: Element whose children repeat under one name (the schema's unbounded sequences).
_REPEATED_CHILD = {"Keywords": "Keyword", "Results": "MetricResult", "EHRCompatibility": "EHR"}


class ModelCardInvalid(GovernanceError):
    """The generated card breaks the schema; the message names the failing element."""


class _LocalImports(etree.Resolver):
    def resolve(self, system_url, public_id, context):
        local = _IMPORTED_SCHEMAS.get(system_url)
        return self.resolve_filename(str(local), context) if local else None


@functools.cache
def schema() -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    parser.resolvers.add(_LocalImports())
    return etree.XMLSchema(etree.parse(str(SCHEMA_FILE), parser))


def _append(parent: etree._Element, name: str, value: Any) -> None:
    element = etree.SubElement(parent, f"{{{NAMESPACE}}}{name}")
    if name == "ValueJson" and not isinstance(value, str):  # a JSON value carried as text, as CHAI's examples do
        element.text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    elif isinstance(value, dict):
        for child, child_value in value.items():
            if child_value is not None:
                _append(element, child, child_value)
    elif isinstance(value, list):
        for entry in value:
            _append(element, _REPEATED_CHILD[name], entry)
    else:
        element.text = str(value)


def to_element(card: dict[str, Any]) -> etree._Element:
    """The ``AppliedModelCard`` element of a card (keys in schema order; ``None`` leaves an optional one out)."""
    root = etree.Element(f"{{{NAMESPACE}}}AppliedModelCard", nsmap={None: NAMESPACE})
    for name, value in card.items():
        if value is not None:
            _append(root, name, value)
    return root


def validate(root: etree._Element) -> None:
    """Raise :class:`ModelCardInvalid` naming the first failing element (its path and the schema's complaint)."""
    checker = schema()
    if checker.validate(root):
        return
    error = checker.error_log[0]
    message = error.message.replace(f"{{{NAMESPACE}}}", "")
    raise ModelCardInvalid(f"model card invalid against CHAI schema {SCHEMA_VERSION} at "
                           f"{_readable_path(root, error.path)}: {message}")


def _readable_path(root: etree._Element, xpath: str | None) -> str:
    """libxml2 reports default-namespace paths as ``/*/*[5]``; name the elements instead."""
    found = root.getroottree().xpath(xpath) if xpath else []
    if not found or not isinstance(found[0], etree._Element):
        return xpath or "/AppliedModelCard"
    element = found[0]
    names = [etree.QName(e).localname for e in (element, *element.iterancestors())]
    return "/" + "/".join(reversed(names))


def to_xml(card: dict[str, Any]) -> bytes:
    """The validated XML document of a card."""
    root = to_element(card)
    validate(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
