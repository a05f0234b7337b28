"""Signed PDF dossiers: built from plain values, rendered sandboxed by WeasyPrint, signed (PAdES) with the
institution's key by pyHanko, verified offline."""
