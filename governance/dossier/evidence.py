"""A completed audit's machine-readable evidence (``audit-results.json``), sealed once and embedded by every dossier.

A completed run's results no longer change (their digest is on the run), yet each of its dossiers (the audit gate,
the decision, a continuing review) used to encode them as canonical JSON and deflate them again: 117 MB and about
three seconds at 100,000 items. The run's evidence is now encoded and deflated once, when the run completes, and
kept in the instance beside the dossiers; a dossier embeds the deflated bytes as they are (PDF's FlateDecode reads
zlib streams). The sealed file carries an HMAC under the instance's secret key: a file changed or copied in on disk is
not embedded but sealed again from the database, and so is one whose run was changed after sealing (its name holds
the digests of the run's results and of everything else the evidence says; the database already refuses to change
a completed run's verdict, summary or results, so in practice only its metadata can).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Settings
    from ..models import AuditRun

log = logging.getLogger(__name__)

AUDIT_RESULTS = "audit-results.json"
EVIDENCE_DIR = "evidence"
#: zlib's default level: a sixth of the size of the JSON, once per run (PDF writers use 9: four times slower here).
LEVEL = 6


def json_bytes(value: Any) -> bytes:
    """Compact canonical JSON (the C encoder; an indented dump of a 12,000-item audit takes ten times as long)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


@dataclass(frozen=True)
class Deflated:
    """An attachment already deflated (a zlib stream), with the digests and size of the bytes it inflates to."""

    deflated: bytes
    sha256: str
    size: int
    md5: str

    @classmethod
    def of(cls, data: bytes, level: int = LEVEL) -> Deflated:
        return cls(zlib.compress(data, level), hashlib.sha256(data).hexdigest(), len(data),
                   hashlib.md5(data, usedforsecurity=False).hexdigest())

    def inflate(self) -> bytes:
        return zlib.decompress(self.deflated)


def digests(attachments: dict[str, bytes | Deflated]) -> dict[str, tuple[str, int]]:
    """Each attachment's sha256 and size, of the bytes it holds (inflated)."""
    return {name: (data.sha256, data.size) if isinstance(data, Deflated)
            else (hashlib.sha256(data).hexdigest(), len(data)) for name, data in attachments.items()}


def header(run: AuditRun) -> dict[str, Any]:
    """Everything the evidence says about the run but its item results."""
    return {"audit_run": run.id, "policy": run.policy, "policy_digest": run.policy_digest, "plan": run.plan,
            "operating_characteristics": run.operating_characteristics, "summary": run.summary or {},
            "metadata": run.run_metadata, "verdict": run.verdict, "verdict_reasons": run.verdict_reasons,
            "results_digest": run.results_digest}


def _path(settings: Settings, run: AuditRun, head: dict[str, Any]) -> Path:
    head_digest = hashlib.sha256(json_bytes(head)).hexdigest()
    return (settings.instance_path / EVIDENCE_DIR /
            f"audit-run-{run.id}-{(run.results_digest or 'none')[:16]}-{head_digest[:16]}.json.zlib")


def _key(settings: Settings) -> bytes | None:
    secret = settings.secret_key.get_secret_value()
    return secret.encode("utf-8") if secret else None


def _mac(key: bytes, meta: dict[str, Any], deflated: bytes) -> str:
    mac = hmac.new(key, json_bytes(meta), hashlib.sha256)
    mac.update(deflated)
    return mac.hexdigest()


def _read(settings: Settings, path: Path) -> Deflated | None:
    """The sealed evidence at ``path`` if it is there and its HMAC holds."""
    key = _key(settings)
    if key is None:
        return None
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return None
    line, _, deflated = content.partition(b"\n")
    try:
        meta = json.loads(line)
        claimed = meta.pop("mac")
        sealed = Deflated(deflated, meta["sha256"], int(meta["size"]), meta["md5"])
    except (ValueError, KeyError, TypeError):
        log.warning("sealed evidence %s is unreadable; sealing it again", path.name)
        return None
    if not hmac.compare_digest(str(claimed), _mac(key, meta, deflated)):
        log.warning("sealed evidence %s does not carry this instance's HMAC; sealing it again", path.name)
        return None
    return sealed


def seal(settings: Settings, run: AuditRun, rows: list[dict[str, Any]]) -> Deflated:
    """Encode and deflate the run's evidence, and keep it (when the instance has a secret key to seal it with)."""
    head = header(run)
    sealed = Deflated.of(json_bytes({**head, "items": rows}))
    key = _key(settings)
    if key is not None:
        path = _path(settings, run, head)
        meta = {"sha256": sealed.sha256, "size": sealed.size, "md5": sealed.md5}
        line = json_bytes({**meta, "mac": _mac(key, meta, sealed.deflated)})
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_bytes(line + b"\n" + sealed.deflated)
        os.replace(partial, path)  # readers see the whole file or none
    return sealed


def audit_results(settings: Settings, run: AuditRun, rows: Callable[[], list[dict[str, Any]]]) -> Deflated:
    """The run's sealed evidence; sealed now (from ``rows()``) when it was not, or not as the run now stands."""
    return _read(settings, _path(settings, run, header(run))) or seal(settings, run, rows())


def seal_completed(settings: Settings, run: AuditRun, rows: list[dict[str, Any]]) -> None:
    """Seal a run's evidence as it completes, with the results at hand. A failure is logged: the first dossier of
    the run seals it instead."""
    try:
        seal(settings, run, rows)
    except OSError as exc:
        log.warning("audit run %s: evidence not sealed (%s); its first dossier will seal it", run.id, exc)
