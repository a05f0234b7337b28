"""Rendering: a sandboxed, autoescaping Jinja environment over ``reports/``, and WeasyPrint with a URL
fetcher that reads nothing but the report's own assets (and data: URLs)."""

from __future__ import annotations

import json
import logging
import mimetypes
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from functools import cache

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from .evidence import Deflated, digests

TEMPLATE = "dossier.html"
SIGNATURE_BOX_ID = "signature-box"
#: The catalog key holding the evidence manifest (covered by the signature like the rest of the file).
MANIFEST_KEY = "GovernanceEvidence"
PX_TO_PT = 0.75


@cache
def _fetcher_class():
    """WeasyPrint is imported when the first dossier is rendered, not when a command starts (0.7 s)."""
    from weasyprint.urls import URLFetcher

    class Refusing(URLFetcher):
        """Fetches data: URLs and files inside the reports folder; refuses everything else (and records it)."""

        def __init__(self, root: Path):
            super().__init__(allowed_protocols={"file", "data"}, allow_redirects=False, timeout=1)
            self.root = root.resolve()
            self.refused: list[str] = []

        def fetch(self, url, headers=None):
            parts = urlsplit(url)
            if parts.scheme == "data":
                return super().fetch(url, headers)
            if parts.scheme == "file":
                target = Path(unquote(parts.path)).resolve()
                if target.is_relative_to(self.root) and target.is_file():
                    return super().fetch(url, headers)
            self.refused.append(url)
            raise ValueError(f"the dossier may only use its own assets; refused {url}")

    return Refusing


def RefusingFetcher(root: Path):  # noqa: N802 - a class to its callers, built on first use
    """A URL fetcher that reads data: URLs and files inside ``root`` only, and records what it refused."""
    return _fetcher_class()(root)


@dataclass
class Rendered:
    pdf: bytes
    #: (page index, x1, y1, x2, y2) in PDF points, origin bottom-left: where the visible signature goes.
    signature_box: tuple[int, float, float, float, float]
    manifest: dict[str, Any]
    pages: int
    refused_urls: list[str] = field(default_factory=list)


@cache
def environment(reports_dir: Path) -> SandboxedEnvironment:
    """One environment per reports folder, so each template is compiled once per process (0.16 s for the dossier's),
    and again only when its file changes (Jinja checks the file's time)."""
    env = SandboxedEnvironment(loader=FileSystemLoader(str(reports_dir)), autoescape=True, undefined=StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v, digits=1: "—" if v is None else f"{v * 100:.{digits}f}%"
    env.filters["num"] = lambda v, digits=3: "—" if v is None else f"{v:.{digits}f}"
    env.filters["words"] = lambda v: (v or "—").replace("_", " ") if isinstance(v, str) else v
    return env


def warm_up(reports_dir: Path) -> float:
    """Import the renderer and the signer and lay out one line in the dossier's fonts, so that the first dossier of
    a worker costs what every later one does (imports and font set-up are over a second of it). Returns the seconds
    it took. Called by the Celery worker before it forks its pool, whose processes inherit all of it."""
    import time

    began = time.perf_counter()
    from pyhanko.sign import signers  # noqa: F401 - imported for the processes to come
    from weasyprint import HTML

    for template in sorted(reports_dir.glob("*.html")):
        environment(reports_dir).get_template(template.name)

    HTML(string='<link rel="stylesheet" href="dossier.css"><p>Ethics review 伦理审查 <b>1</b> <span class="digest">'
                '0123abcdef</span></p>', base_url=reports_dir.resolve().as_uri() + "/",
         url_fetcher=RefusingFetcher(reports_dir)).render().write_pdf()
    return time.perf_counter() - began


def _embed(pdf, attachments: dict[str, bytes | Deflated], moment: str) -> None:
    """The evidence as the PDF's embedded files (a name tree, in name order), each stream deflated once: sealed
    evidence as it was sealed, the rest here at zlib's default level (WeasyPrint's level 9 took four times as long)."""
    import pydyf

    names = pydyf.Array()
    for name, data in sorted(attachments.items()):
        packed = data if isinstance(data, Deflated) else Deflated.of(data)
        media_type = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
        stream = pydyf.Stream([packed.deflated], pydyf.Dictionary({
            "Type": "/EmbeddedFile", "Subtype": "/" + media_type.replace("/", "#2f"), "Filter": "/FlateDecode",
            "Params": pydyf.Dictionary({"CheckSum": f"<{packed.md5}>", "Size": packed.size,
                                        "CreationDate": pydyf.String(moment), "ModDate": pydyf.String(moment)})}))
        pdf.add_object(stream)
        spec = pydyf.Dictionary({"Type": "/Filespec", "F": pydyf.String(name.encode(errors="ignore")),
                                 "UF": pydyf.String(name), "EF": pydyf.Dictionary({"F": stream.reference}),
                                 "Desc": pydyf.String(f"sha256 {packed.sha256}")})
        pdf.add_object(spec)
        names.extend([spec["F"], spec.reference])
    tree = pydyf.Dictionary({"Names": names})
    pdf.add_object(tree)
    if "Names" not in pdf.catalog:
        pdf.catalog["Names"] = pydyf.Dictionary()
    pdf.catalog["Names"]["EmbeddedFiles"] = tree.reference


def render(context: dict[str, Any], attachments: dict[str, bytes | Deflated], reports_dir: Path,
           template: str = TEMPLATE) -> Rendered:
    import pydyf
    from weasyprint import HTML

    html = environment(reports_dir).get_template(template).render(**context)
    fetcher = RefusingFetcher(reports_dir)
    logger = logging.getLogger("weasyprint")
    level = logger.level
    logger.setLevel(logging.ERROR)  # matplotlib's SVG style attributes WeasyPrint ignores are not news
    try:
        document = HTML(string=html, base_url=reports_dir.resolve().as_uri() + "/", url_fetcher=fetcher).render()
    finally:
        logger.setLevel(level)
    box = None
    for index, page in enumerate(document.pages):
        if SIGNATURE_BOX_ID in page.anchors:
            x1, y1, x2, y2 = page.anchors[SIGNATURE_BOX_ID]
            height = page.height * PX_TO_PT
            box = (index, *(round(v) for v in (x1 * PX_TO_PT, height - y2 * PX_TO_PT, x2 * PX_TO_PT,
                                                  height - y1 * PX_TO_PT)))
            break
    if box is None:
        raise ValueError(f"the template reserves no #{SIGNATURE_BOX_ID} for the visible signature")
    manifest = {"attachments": {name: digest for name, (digest, _size) in sorted(digests(attachments).items())},
                "submission": (context.get("submission") or {}).get("id"), "gate": context["gate"],
                "chain_head": context["chain"]["head"]}
    if context.get("meeting"):  # minutes are about a meeting, not one case
        manifest["meeting"] = context["meeting"]["id"]

    moment = datetime.now(UTC).strftime("D:%Y%m%d%H%M%SZ")

    def finisher(_document, pdf) -> None:
        pdf.catalog[MANIFEST_KEY] = pydyf.String(json.dumps(manifest, sort_keys=True))
        if attachments:
            _embed(pdf, attachments, moment)

    pdf = document.write_pdf(finisher=finisher)
    return Rendered(pdf, box, manifest, len(document.pages), fetcher.refused)
