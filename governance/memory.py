"""Bulk work that allocates many small containers without reference cycles (reading a run's results, building a
dossier): Python's cyclic collector would walk the growing heap again and again, for nothing."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (reference counting still frees everything without
    cycles); it resumes afterwards, and whatever cyclic garbage the block left is collected in its next pass."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def return_freed_memory() -> None:
    """Hand memory the C allocator keeps after a large transient structure was freed back to the system (glibc's
    ``malloc_trim``): a loaded bank's digest work would otherwise stay in the process's footprint for the whole
    run. Does nothing where the C library has no such call."""
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)
