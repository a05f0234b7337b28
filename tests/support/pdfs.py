"""Small valid PDFs for tests that upload documents (built by hand: no PDF writer is a test dependency)."""

from __future__ import annotations


def one_page_pdf(text: str = "") -> bytes:
    """A one-page PDF, showing ``text`` (ASCII) when given, written out with its cross-reference table."""
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200]"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"]
    if text:
        content = b"BT /F1 12 Tf 20 100 Td (" + text.encode("ascii") + b") Tj ET"
        objects += [page + b" /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
                    b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
                    b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    else:
        objects.append(page + b" >>")
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
