"""Running a coroutine or an ``asyncio.run``-wrapping library call from synchronous code."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def outside_event_loop(call: Callable[[], T]) -> T:
    """Run ``call`` (which may call ``asyncio.run``) here, or, where this thread already runs an event loop
    (an async server, Playwright's sync API) and ``asyncio.run`` would fail, on a short-lived helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return call()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="outside-loop") as helper:
        return helper.submit(call).result()


def run_coroutine(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(make())`` that also works inside a running loop; ``make`` builds the coroutine on the thread
    that runs it, so no coroutine is left un-awaited when the loop check fails."""
    return outside_event_loop(lambda: asyncio.run(make()))
