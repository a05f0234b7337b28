"""The event log anchored outside the database: signed checkpoints of its head.

A checkpoint records the sequence number of the last event, its hash (the chain head), how many events the log
held up to it, the time and the instance, signed with the institution's key (the PKCS#12 of
:mod:`governance.dossier.keys`; ECDSA, RSA or Ed25519 by the key's type) over the canonical JSON of those fields.
Checkpoints are appended, one JSON line each, to ``<instance>/anchors/log-checkpoints.jsonl`` (opened with
``O_APPEND`` and fsynced) and to every file named in the ``log_anchor_paths`` setting (a write-once mount, a remote
file system, a file a syslog forwarder ships away). One is written whenever a dossier is emitted, by each scheduler
pass in which the log grew, and by ``govern log checkpoint``. No RFC 3161 timestamp is requested for them.

:func:`verify` reads the log once (:func:`governance.eventlog.verify_chain` with an observer) and checks it against
every checkpoint and every stored dossier's recorded chain head: a checkpointed head that the log no longer holds at
its sequence number (re-hashing, or rows removed and renumbered), a log that ends before a checkpoint or holds fewer
events than it counted (truncation), a different number of events up to a checkpoint (rows removed or inserted and
renumbered), and checkpoints whose signature does not verify. What was appended after the last checkpoint rests on
the hash chain alone: a forged row appended there with a correct hash cannot be told from a real one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlmodel import Session

from . import eventlog
from .config import Settings
from .dossier.keys import SigningKeyError, fingerprint, load_certificate, passphrase, paths
from .models import Dossier, Event, utcnow

log = logging.getLogger(__name__)

ANCHOR_DIR = "anchors"
ANCHOR_FILE = "log-checkpoints.jsonl"
FORMAT_VERSION = 1
#: How far back from the end of a store the last checkpoint is looked for.
_TAIL_BYTES = 64 * 1024


class AnchorError(Exception):
    """A checkpoint could not be written; the message says why."""


# --- where checkpoints live ------------------------------------------------------------------------

def store_paths(settings: Settings) -> list[Path]:
    """The default store in the instance folder, then every ``log_anchor_paths`` file."""
    extra = [Path(p).expanduser() for p in settings.log_anchor_paths]
    return [settings.instance_path / ANCHOR_DIR / ANCHOR_FILE, *extra]


def instance_id(settings: Settings) -> str:
    """Names the database a checkpoint is about (the URL without its password, hashed): informational."""
    try:
        url = make_url(settings.sqlalchemy_url).set(password=None).render_as_string(hide_password=False)
    except Exception:  # pragma: no cover - the settings validated the URL already
        url = settings.sqlalchemy_url
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def _append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(descriptor, line.encode("utf-8"))  # one write of one line: appends never interleave
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# --- signing ---------------------------------------------------------------------------------------

def _signed_bytes(record: dict[str, Any]) -> bytes:
    return eventlog.canonical_json({k: v for k, v in record.items() if k != "sig"}).encode("utf-8")


def _load_key(settings: Settings) -> tuple[Any, x509.Certificate]:
    where = paths(settings)
    if not where.pkcs12.exists():
        raise SigningKeyError(f"no signing key at {where.pkcs12}: run `govern keys init`")
    try:
        key, certificate, _chain = pkcs12.load_key_and_certificates(where.pkcs12.read_bytes(), passphrase(settings))
    except ValueError:
        raise SigningKeyError(f"cannot open {where.pkcs12}: wrong passphrase or not a PKCS#12 file") from None
    if key is None or certificate is None:
        raise SigningKeyError(f"{where.pkcs12} holds no private key and certificate")
    return key, certificate


def _algorithm(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ecdsa-sha256"
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa-pss-sha256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise SigningKeyError(f"the signing key is a {type(key).__name__}; checkpoints need an EC, RSA or Ed25519 key")


def _sign(key: Any, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH),
                        hashes.SHA256())
    return key.sign(data)


def _signature_holds(certificate: x509.Certificate, algorithm: str, signature: bytes, data: bytes) -> bool:
    public = certificate.public_key()
    try:
        if algorithm == "ecdsa-sha256" and isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif algorithm == "rsa-pss-sha256" and isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                       salt_length=padding.PSS.MAX_LENGTH), hashes.SHA256())
        elif algorithm == "ed25519" and isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(signature, data)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def trusted_certificates(settings: Settings) -> dict[str, x509.Certificate]:
    """Certificates checkpoints may be signed by, by fingerprint: the institution's own (from its PKCS#12, or the
    exported PEM next to it) and every ``trust_roots`` PEM (keys used before a rotation)."""
    found: dict[str, x509.Certificate] = {}
    try:
        certificate = load_certificate(settings)
        found[fingerprint(certificate)] = certificate
    except SigningKeyError:
        pass
    pem_files = [paths(settings).certificate, *(Path(p) for p in settings.trust_roots)]
    for pem in pem_files:
        try:
            for certificate in x509.load_pem_x509_certificates(pem.read_bytes()):
                found.setdefault(fingerprint(certificate), certificate)
        except (OSError, ValueError):
            continue
    return found


# --- writing ---------------------------------------------------------------------------------------

def write_checkpoint(settings: Settings, *, seq: int, head: str, count: int, reason: str,
                     dossier: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Sign a checkpoint and append it to every store; return it and the stores that could not be written (a
    failure of one store does not stop the others; :class:`AnchorError` when none was written)."""
    key, certificate = _load_key(settings)
    record: dict[str, Any] = {"v": FORMAT_VERSION, "seq": seq, "head": head, "count": count,
                              "at": eventlog.format_timestamp(utcnow()), "instance": instance_id(settings),
                              "reason": reason, "signer": fingerprint(certificate)}
    if dossier is not None:
        record["dossier"] = dossier
    record["alg"] = _algorithm(key)
    signature = _sign(key, _signed_bytes(record))
    record["sig"] = base64.b64encode(signature).decode("ascii")
    line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    failed = []
    for path in store_paths(settings):
        try:
            _append_line(path, line)
        except OSError as exc:
            log.error("could not append a log checkpoint to %s: %s", path, exc)
            failed.append(f"{path}: {exc.strerror or exc}")
    if len(failed) == len(store_paths(settings)):
        raise AnchorError("no anchor store could be written: " + "; ".join(failed))
    return record, failed


def _last_record(path: Path) -> dict[str, Any] | None:
    """The last complete checkpoint line of a store (read from its end only)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - _TAIL_BYTES))
            tail = handle.read()
    except OSError:
        return None
    for raw in reversed(tail.splitlines()):
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("seq"), int):
            return record
    return None


def checkpoint(session: Session, settings: Settings, *, reason: str, force: bool = False) -> dict[str, Any] | None:
    """Anchor the log's current head: verify what was appended since the last checkpoint of the default store
    (all of the log when that checkpoint does not hold: then nothing is anchored) and write a checkpoint, unless
    the head has not moved and ``force`` is not given (then None)."""
    last = _last_record(store_paths(settings)[0])
    start_seq, start_hash, start_count = 0, eventlog.GENESIS_HASH, 0
    if last is not None and _record_signature_problem(last, trusted_certificates(settings)) is None:
        held = session.execute(select(Event.hash).where(Event.seq == last["seq"])).scalar()
        if held != last["head"]:
            raise AnchorError(f"the log no longer holds the last checkpoint's head at seq {last['seq']}: it was "
                              "rewritten or truncated; run `govern log verify`")
        start_seq, start_hash, start_count = last["seq"], last["head"], int(last.get("count", last["seq"]))
    report = eventlog.verify_chain(session, start_seq=start_seq, start_hash=start_hash)
    if not report.ok:
        raise AnchorError(f"not anchoring a broken log: {report.describe()}")
    seq = start_seq + report.count
    if last is not None and not force and seq == last["seq"] and report.head_hash == last["head"]:
        return None
    record, _failed = write_checkpoint(settings, seq=seq, head=report.head_hash, count=start_count + report.count,
                                       reason=reason)
    return record


def verified_chain(session: Session, settings: Settings) -> dict[str, Any]:
    """The chain a dossier prints, checked from the last signed checkpoint of the default store (whose head the log
    must still hold at its sequence number) rather than from the first event: each dossier then re-hashes only what
    was appended since the last checkpoint, and every dossier writes one. Without a checkpoint that holds, from the
    first event. ``seq`` and ``count`` are those of the head; ``since`` is where the check started."""
    last = _last_record(store_paths(settings)[0])
    start_seq, start_hash, start_count = 0, eventlog.GENESIS_HASH, 0
    if last is not None and _record_signature_problem(last, trusted_certificates(settings)) is None:
        held = session.execute(select(Event.hash).where(Event.seq == last["seq"])).scalar()
        if held != last["head"]:
            return {"ok": False, "count": 0, "seq": 0, "head": held or "", "since": last["seq"],
                    "problem": f"the log no longer holds the last signed checkpoint's head at seq {last['seq']}: it "
                               "was rewritten or truncated"}
        start_seq, start_hash, start_count = last["seq"], last["head"], int(last.get("count", last["seq"]))
    report = eventlog.verify_chain(session, start_seq=start_seq, start_hash=start_hash)
    problem = report.describe() if not report.ok else (
        f"event log intact: {start_count + report.count} events, head {report.head_hash}"
        + (f" (checked from the signed checkpoint at seq {start_seq})" if start_seq else ""))
    return {"ok": report.ok, "count": start_count + report.count, "seq": start_seq + report.count,
            "head": report.head_hash, "since": start_seq, "problem": problem}


def anchor_dossier(settings: Settings, dossier: dict[str, Any], chain: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint written when a dossier is emitted (once its row is committed): the head the dossier prints
    (``chain`` of its context, from :func:`verified_chain`) and the dossier's id, digest and path. A failure is
    logged, never raised: the dossier is signed and stored either way, and the next scheduler pass anchors."""
    if not chain.get("ok"):
        log.warning("dossier %s: the event log did not verify; no checkpoint written", dossier.get("id"))
        return None
    try:
        record, _failed = write_checkpoint(settings, seq=int(chain.get("seq", chain["count"])), head=chain["head"],
                                           count=int(chain["count"]), reason="dossier", dossier=dossier)
    except (AnchorError, SigningKeyError, OSError) as exc:
        log.error("dossier %s: no log checkpoint written: %s", dossier.get("id"), exc)
        return None
    return record


# --- verifying -------------------------------------------------------------------------------------

@dataclass
class StoredCheckpoint:
    path: str
    line: int
    record: dict[str, Any]


@dataclass
class AnchorReport:
    chain: eventlog.ChainReport
    stores: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: int = 0
    last_checkpoint: dict[str, Any] | None = None
    dossiers: int = 0
    findings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.findings

    @property
    def after_last_checkpoint(self) -> int:
        last = self.last_checkpoint["seq"] if self.last_checkpoint else 0
        return max(0, self.chain.last_seq - last)

    def add(self, kind: str, message: str, **detail: Any) -> None:
        self.findings.append({"kind": kind, "message": message, **detail})

    def lines(self) -> list[str]:
        out = []
        for store in self.stores:
            out.append(f"anchor store {store['path']}: " + (f"{store['checkpoints']} checkpoints" if store["exists"]
                                                             else "missing"))
        if self.last_checkpoint:
            last = self.last_checkpoint
            out.append(f"{self.checkpoints} signed checkpoints checked; the last at seq {last['seq']} ({last['at']}); "
                       f"{self.dossiers} dossier chain heads checked")
        else:
            out.append(f"no checkpoint found: only the chain itself is checked; {self.dossiers} dossier chain heads "
                       "checked")
        out.append(f"{self.after_last_checkpoint} events after the last checkpoint rest on the hash chain alone (a row "
                   "appended there with a correct hash cannot be told from a real one)")
        out += [f"{f['kind'].upper()}: {f['message']}" for f in self.findings]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"ok": not self.findings, "stores": self.stores, "checkpoints": self.checkpoints,
                "last_checkpoint": ({k: self.last_checkpoint.get(k) for k in ("seq", "head", "count", "at", "reason")}
                                    if self.last_checkpoint else None),
                "dossiers_checked": self.dossiers, "events_after_last_checkpoint": self.after_last_checkpoint,
                "findings": self.findings}


def read_checkpoints(settings: Settings) -> tuple[list[StoredCheckpoint], list[dict[str, Any]], list[tuple]]:
    """Every checkpoint line of every store, the stores' summary, and unreadable lines (path, line, why)."""
    found, stores, unreadable = [], [], []
    for path in store_paths(settings):
        if not path.exists():
            stores.append({"path": str(path), "exists": False, "checkpoints": 0})
            continue
        count = 0
        try:
            with path.open("r", encoding="utf-8", errors="replace") as handle:
                for number, raw in enumerate(handle, start=1):
                    if not raw.strip():
                        continue
                    try:
                        record = json.loads(raw)
                    except ValueError:
                        unreadable.append((str(path), number, "not a JSON line"))
                        continue
                    if not isinstance(record, dict):
                        unreadable.append((str(path), number, "not a checkpoint"))
                        continue
                    found.append(StoredCheckpoint(str(path), number, record))
                    count += 1
        except OSError as exc:
            unreadable.append((str(path), 0, f"cannot be read: {exc.strerror or exc}"))
        stores.append({"path": str(path), "exists": True, "checkpoints": count})
    return found, stores, unreadable


def _record_signature_problem(record: dict[str, Any], certificates: dict[str, x509.Certificate]) -> str | None:
    try:
        seq, head, count = record["seq"], record["head"], record["count"]
        signature = base64.b64decode(record["sig"], validate=True)
    except (KeyError, TypeError, ValueError):
        return "a field is missing or malformed"
    if not (isinstance(seq, int) and isinstance(count, int) and isinstance(head, str)):
        return "a field is missing or malformed"
    certificate = certificates.get(record.get("signer", ""))
    if certificate is None:
        return f"signed by a key that is not the institution's nor in trust_roots ({str(record.get('signer'))[:16]}…)"
    if not _signature_holds(certificate, str(record.get("alg", "")), signature, _signed_bytes(record)):
        return "its signature does not verify (the checkpoint was altered or forged)"
    return None


def verify(session: Session, settings: Settings, *, observe=None, workers: int = 1) -> AnchorReport:
    """One pass over the log: the chain, every checkpoint of every store and every dossier's recorded head
    (``observe`` also sees every row, for the state replay; ``workers``: processes that may hash the log, see
    :func:`eventlog.verify_chain_marked`)."""
    stored, stores, unreadable = read_checkpoints(settings)
    certificates = trusted_certificates(settings)
    valid: list[StoredCheckpoint] = []
    findings: list[tuple[str, str, dict[str, Any]]] = []
    for path, number, why in unreadable:
        findings.append(("forged checkpoint", f"{path} line {number}: {why}", {"path": path, "line": number}))
    for item in stored:
        problem = _record_signature_problem(item.record, certificates)
        if problem:
            findings.append(("forged checkpoint", f"{item.path} line {item.line}: {problem}",
                             {"path": item.path, "line": item.line}))
        else:
            valid.append(item)
    dossiers = session.execute(select(Dossier.id, Dossier.chain_head, Dossier.sha256)).all()
    wanted_seqs = frozenset(item.record["seq"] for item in valid)
    wanted_heads = frozenset(row.chain_head for row in dossiers if row.chain_head)
    chain, at_seq, head_seq = eventlog.verify_chain_marked(session, seqs=wanted_seqs, heads=wanted_heads,
                                                           observe=observe, workers=workers)
    rows = chain.rows
    report = AnchorReport(chain=chain, stores=stores, checkpoints=len(valid), dossiers=len(dossiers))
    for kind, message, detail in findings:
        report.add(kind, message, **detail)
    reported: set[tuple] = set()
    for item in sorted(valid, key=lambda c: (c.record["seq"], c.path, c.line)):
        cp = item.record
        seq, head, count = cp["seq"], cp["head"], cp["count"]
        where = f"checkpoint of {cp.get('at', '?')} ({cp.get('reason', '?')}, {item.path} line {item.line})"
        if seq > chain.last_seq:
            key = ("truncation", seq)
            if key not in reported:
                reported.add(key)
                report.add("truncation", f"the log ends at seq {chain.last_seq} but the {where} anchored seq {seq}: "
                           f"events {chain.last_seq + 1}..{seq} were deleted", seq=seq, log_last_seq=chain.last_seq)
            continue
        if rows < count and ("truncation", seq) not in reported:
            reported.add(("truncation", seq))
            report.add("truncation", f"the log holds {rows} events but the {where} counted {count} up to seq {seq}",
                       seq=seq, events=rows, checkpoint_count=count)
        if seq not in at_seq:
            if ("missing", seq) not in reported:
                reported.add(("missing", seq))
                report.add("renumbering", f"the log has no event {seq}, which the {where} anchored", seq=seq)
            continue
        held, rows_up_to = at_seq[seq]
        if held != head and ("rehash", seq) not in reported:
            reported.add(("rehash", seq))
            report.add("re-hash", f"the hash at seq {seq} is {held[:16]}…, but the {where} anchored {head[:16]}…: the "
                       f"events up to seq {seq} were rewritten and re-hashed, or removed and renumbered",
                       seq=seq, held=held, anchored=head)
        if rows_up_to != count and ("count", seq) not in reported:
            reported.add(("count", seq))
            report.add("renumbering", f"the log holds {rows_up_to} events up to seq {seq}, but the {where} counted "
                       f"{count}: events were removed or inserted and renumbered", seq=seq, events=rows_up_to,
                       checkpoint_count=count)
    by_id = {row.id: row for row in dossiers}
    for row in dossiers:
        if row.chain_head and row.chain_head not in head_seq:
            report.add("re-hash", f"dossier #{row.id} records chain head {row.chain_head[:16]}…, which no event in the "
                       "log holds any more: the log was rewritten, re-hashed or truncated before it",
                       dossier=row.id, chain_head=row.chain_head)
    for item in valid:
        named = item.record.get("dossier")
        if not isinstance(named, dict):
            continue
        row = by_id.get(named.get("id"))
        if row is None:
            report.add("dossier", f"dossier #{named.get('id')}, anchored by the checkpoint of {item.record.get('at')}, "
                       "is missing from the database", dossier=named.get("id"))
        elif row.sha256 != named.get("sha256"):
            report.add("dossier", f"dossier #{row.id}'s recorded sha256 differs from the one anchored when it was "
                       "emitted", dossier=row.id)
    if valid:
        report.last_checkpoint = max((item.record for item in valid), key=lambda r: (r["seq"], r.get("at", "")))
    return report
