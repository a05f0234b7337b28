"""Offline verification of a dossier: the signature, its coverage, the signer's trust, the embedded
evidence against the hashes printed in it, and (when known) the stored record's sha256."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from .render import MANIFEST_KEY
from ..concurrency import outside_event_loop


@dataclass
class Verification:
    path: str
    failures: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ok": self.ok, "failures": self.failures, **self.details}


def _roots(certificates: list[x509.Certificate | Path | str]):
    roots = []
    for certificate in certificates:
        if isinstance(certificate, (str, Path)):
            roots.append(load_cert_from_pemder(str(certificate)))
        else:
            from cryptography.hazmat.primitives import serialization
            from asn1crypto import x509 as asn1_x509

            roots.append(asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER)))
    return roots


def _embedded_files(reader: PdfFileReader) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    root = reader.root  # indexing dereferences indirect objects; .get() does not
    if "/Names" not in root or "/EmbeddedFiles" not in root["/Names"]:
        return files
    tree = root["/Names"]["/EmbeddedFiles"]
    entries = list(tree["/Names"]) if "/Names" in tree else []
    for name, spec in zip(entries[0::2], entries[1::2], strict=True):
        spec = spec.get_object()
        stream = spec["/EF"]["/F"].get_object()
        files[str(name)] = stream.data
    return files


def verify(path: Path, trust_roots: list, expected_sha256: str | None = None) -> Verification:
    result = Verification(str(path))
    data = path.read_bytes()
    result.details["sha256"] = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and result.details["sha256"] != expected_sha256:
        result.failures.append(f"file sha256 {result.details['sha256']} differs from the stored record {expected_sha256}")
    try:
        with path.open("rb") as handle:
            reader = PdfFileReader(handle, strict=False)
            signatures = reader.embedded_signatures
            if len(signatures) != 1:
                result.failures.append(f"expected one signature, found {len(signatures)}")
                return result
            context = ValidationContext(trust_roots=_roots(trust_roots), allow_fetching=False)
            try:
                status = outside_event_loop(lambda: validate_pdf_signature(signatures[0], context))
            except SignatureValidationError as exc:
                result.failures.append(f"signature cannot be validated: {exc}")
                return result
            signer = status.signing_cert.subject.human_friendly if status.signing_cert else "?"
            result.details.update(signer=signer, intact=status.intact, valid=status.valid, trusted=status.trusted,
                                  coverage=status.coverage.name if status.coverage else None,
                                  signing_time=str(status.signer_reported_dt) if status.signer_reported_dt else None,
                                  timestamp=bool(status.timestamp_validity))
            if not status.intact:
                result.failures.append("signature is not intact: the signed bytes were changed (digest mismatch)")
            elif not status.valid:
                result.failures.append("signature is not cryptographically valid")
            if not status.trusted:
                result.failures.append(f"signer '{signer}' is untrusted: not the institution certificate or a "
                                       f"configured trust root")
            if status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
                extra = len(data) - (signatures[0].byte_range[2] + signatures[0].byte_range[3])
                result.failures.append("the signature does not cover the whole file: an incremental update of "
                                       f"{extra} bytes was appended after signing")
            if "/" + MANIFEST_KEY not in reader.root:
                result.failures.append("no evidence manifest in the document")
                return result
            manifest = json.loads(str(reader.root["/" + MANIFEST_KEY]))
            result.details["manifest"] = manifest
            files = _embedded_files(reader)
            for name, printed in manifest["attachments"].items():
                if name not in files:
                    result.failures.append(f"attachment {name} is missing")
                elif hashlib.sha256(files[name]).hexdigest() != printed:
                    result.failures.append(f"attachment {name} does not match its printed sha256 {printed}")
            for name in sorted(set(files) - set(manifest["attachments"])):
                result.failures.append(f"attachment {name} is not listed in the printed evidence")
    except Exception as exc:  # a file that is not a PDF, or one too damaged to read
        if not result.failures:
            result.failures.append(f"not a readable signed PDF: {type(exc).__name__}: {exc}")
    return result
