"""PAdES signing (ETSI.CAdES.detached) of a whole dossier, visible in its reserved box."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from ..concurrency import outside_event_loop
from ..config import Settings
from .keys import SigningKeyError, passphrase, paths

if TYPE_CHECKING:  # pyHanko is imported when the first dossier is signed, not when a command starts
    from pyhanko.sign import signers

FIELD_NAME = "InstitutionSignature"
STAMP_TEXT = "Digitally signed by %(signer)s\nTime: %(ts)s\nEthics review dossier (PAdES)"


def load_signer(settings: Settings) -> signers.SimpleSigner:
    from pyhanko.sign import signers

    where = paths(settings)
    if not where.pkcs12.exists():
        raise SigningKeyError(f"no signing key at {where.pkcs12}: run `govern keys init`")
    # pyHanko returns None instead of raising when the file or passphrase is wrong.
    signer = signers.SimpleSigner.load_pkcs12(str(where.pkcs12), passphrase=passphrase(settings))
    if signer is None:
        raise SigningKeyError(f"cannot open {where.pkcs12}: wrong passphrase or not a PKCS#12 file")
    return signer


def sign(pdf: bytes, box: tuple[int, float, float, float, float], settings: Settings, *, reason: str,
         signer: signers.SimpleSigner | None = None) -> bytes:
    from pyhanko import stamp
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko.sign.timestamps import HTTPTimeStamper

    signer = signer or load_signer(settings)
    page, x1, y1, x2, y2 = box
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    fields.append_signature_field(writer, fields.SigFieldSpec(sig_field_name=FIELD_NAME, on_page=page,
                                                              box=(x1, y1, x2, y2)))
    metadata = signers.PdfSignatureMetadata(field_name=FIELD_NAME, subfilter=fields.SigSeedSubFilter.PADES,
                                            md_algorithm="sha256", reason=reason, location=settings.institution_name)
    timestamper = HTTPTimeStamper(settings.tsa_url) if settings.tsa_url else None
    pdf_signer = signers.PdfSigner(metadata, signer=signer, timestamper=timestamper,
                                   stamp_style=stamp.TextStampStyle(stamp_text=STAMP_TEXT, border_width=1))
    out = io.BytesIO()
    outside_event_loop(lambda: pdf_signer.sign_pdf(writer, output=out))
    return out.getvalue()
