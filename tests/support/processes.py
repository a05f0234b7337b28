"""Servers the tests start as processes of their own (slapd, the OpenID provider)."""

from __future__ import annotations

import subprocess


def stop(process: subprocess.Popen | None) -> None:
    """Terminate ``process`` if it still runs, killing it after 10 s (a server that ignores SIGTERM)."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
