"""What a file is, judged from its bytes, never from its name.

Written here rather than with a library: the accepted types are five, PDF, PNG and JPEG are one magic number
each, and the two that matter most are not magic numbers at all. ``filetype`` (PyPI) tells DOCX from XLSX by
looking for ``word/`` or ``xl/`` among the first bytes of the ZIP, and knows nothing of plain text; here the
ZIP's own ``[Content_Types].xml`` names its main part, read through :mod:`zipfile` from the central directory
and that one small member only (a ZIP bomb is never inflated), and text is valid UTF-8 without NUL.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import PurePath

from ..domain import N_
from ..errors import GovernanceError, Reason

#: ``[Content_Types].xml`` is a few KiB; a larger one is not read (nor is any other member of the archive).
MAX_CONTENT_TYPES_BYTES = 256 * 1024
#: More members than this is not an office document this app accepts.
MAX_ZIP_MEMBERS = 10_000


@dataclass(frozen=True)
class Kind:
    media_type: str
    #: The file-name extensions a file of this kind may carry (the first is the one a download gets).
    extensions: tuple[str, ...]


PDF = Kind("application/pdf", (".pdf",))
PNG = Kind("image/png", (".png",))
JPEG = Kind("image/jpeg", (".jpg", ".jpeg"))
DOCX = Kind("application/vnd.openxmlformats-officedocument.wordprocessingml.document", (".docx",))
XLSX = Kind("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", (".xlsx",))
TEXT = Kind("text/plain", (".txt", ".md", ".csv", ".log", ".json", ".yaml", ".yml", ""))
KINDS = (PDF, PNG, JPEG, DOCX, XLSX, TEXT)
ACCEPTED = "PDF, DOCX, XLSX, PNG, JPEG, plain text (UTF-8)"

#: The main document part's content type in ``[Content_Types].xml``, for each office kind.
_OFFICE_MAIN_PARTS = {
    DOCX: re.compile(rb'ContentType="application/vnd\.openxmlformats-officedocument\.wordprocessingml\.document'
                     rb'\.main\+xml"'),
    XLSX: re.compile(rb'ContentType="application/vnd\.openxmlformats-officedocument\.spreadsheetml\.sheet'
                     rb'\.main\+xml"'),
}


class DocumentRefused(GovernanceError):
    """An upload that is not stored: ``filename`` names it, ``reason`` (a translatable :class:`Reason`) says why."""

    def __init__(self, filename: str, reason: Reason):
        super().__init__(f"{filename}: {reason}")
        self.filename, self.reason = filename, reason


def _office_kind(data: bytes) -> Kind | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:  # reads the central directory only
            if len(archive.infolist()) > MAX_ZIP_MEMBERS:
                return None
            try:
                info = archive.getinfo("[Content_Types].xml")
            except KeyError:
                return None
            if info.file_size > MAX_CONTENT_TYPES_BYTES:
                return None
            with archive.open(info) as member:
                manifest = member.read(MAX_CONTENT_TYPES_BYTES + 1)  # bounded even if the header lies
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, RuntimeError):
        return None
    if len(manifest) > MAX_CONTENT_TYPES_BYTES:
        return None
    for kind, main_part in _OFFICE_MAIN_PARTS.items():
        if main_part.search(manifest):
            return kind
    return None


def _is_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def sniff(data: bytes) -> Kind | None:
    """The kind of ``data`` from its content, or None when it is none of the accepted kinds."""
    if data.startswith(b"%PDF-"):
        return PDF
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"PK\x03\x04"):
        return _office_kind(data)
    if _is_text(data):
        return TEXT
    return None


def detect(filename: str, data: bytes, max_bytes: int) -> Kind:
    """The kind of an upload, or :class:`DocumentRefused` saying why not: empty, larger than ``max_bytes``, of a
    kind not accepted, or named with an extension that contradicts its content (a PDF called ``.docx``)."""
    if not data:
        raise DocumentRefused(filename, Reason(N_("the file is empty")))
    if len(data) > max_bytes:
        raise DocumentRefused(filename, Reason(N_("the file is %(size)s bytes; at most %(limit)s are accepted"),
                                               size=f"{len(data):,}", limit=f"{max_bytes:,}"))
    kind = sniff(data)
    if kind is None:
        raise DocumentRefused(filename, Reason(N_("the content is not one of the accepted types (%(accepted)s)"),
                                               accepted=ACCEPTED))
    extension = PurePath(filename).suffix.lower()
    if extension not in kind.extensions:
        raise DocumentRefused(filename, Reason(N_("the name ends in '%(extension)s' but the content is %(type)s"),
                                               extension=extension or "(nothing)", type=kind.media_type))
    return kind
