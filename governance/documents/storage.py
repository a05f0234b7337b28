"""Where document bytes live: the instance folder (the default) or an S3-compatible object store.

Both are content-addressed: the key is the content's sha256, so the same bytes attached twice are stored once and
nothing stored is ever replaced (a new version of a document is other bytes, hence another key). Reading back
checks the sha256, so a file changed behind the app's back is an error, never evidence.

The object store is spoken to with boto3: its S3 client works with any S3-compatible server (MinIO, Ceph, the
cloud ones) given an endpoint URL, and the tests run it against moto's real HTTP server. It is imported only when
an object store is configured.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import Protocol

from ..config import Settings
from ..errors import GovernanceError

DOCUMENT_DIR = "documents"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class StoredDocumentCorrupt(GovernanceError):
    """The bytes read back are not the ones recorded."""


class Storage(Protocol):
    #: The name recorded with each document (``instance`` or ``s3``).
    name: str

    def put(self, sha256: str, data: bytes, media_type: str) -> str:
        """Store ``data`` (whose sha256 the caller computed) if not already there; return its key."""

    def get(self, key: str) -> bytes:
        """The stored bytes (unchecked; see :func:`read_verified`)."""


def key_for(sha256: str) -> str:
    if not _DIGEST.match(sha256):
        raise ValueError(f"not a sha256: {sha256!r}")
    return f"{sha256[:2]}/{sha256}"


class InstanceFolder:
    """Files under ``<instance>/documents/``, written once: a temporary file is linked to its final name, which
    fails rather than replaces when the name exists (the same content, already stored)."""

    name = "instance"

    def __init__(self, root: Path):
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"a document key outside the store: {key!r}")
        return path

    def put(self, sha256: str, data: bytes, media_type: str) -> str:
        key = key_for(sha256)
        target = self._path(key)
        if target.exists():
            return key
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        with partial.open("xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(partial, target)
        except FileExistsError:
            pass  # stored meanwhile by another upload of the same bytes
        finally:
            partial.unlink()
        return key

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()


class ObjectStore:
    """One bucket of an S3-compatible store; objects under ``documents/``."""

    name = "s3"

    def __init__(self, settings: Settings):
        import boto3
        from botocore.config import Config

        self.bucket = settings.document_s3_bucket
        self.client = boto3.client(
            "s3", endpoint_url=settings.document_s3_endpoint_url or None, region_name=settings.document_s3_region,
            aws_access_key_id=settings.document_s3_access_key_id or None,
            aws_secret_access_key=settings.document_s3_secret_access_key.get_secret_value() or None,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}, connect_timeout=10,
                          read_timeout=60))

    def put(self, sha256: str, data: bytes, media_type: str) -> str:
        from botocore.exceptions import ClientError

        key = f"{DOCUMENT_DIR}/{key_for(sha256)}"
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return key
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchKey", "NotFound"}:
                raise GovernanceError(f"the document store refused: {exc}") from None
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=media_type,
                               Metadata={"sha256": sha256})
        return key

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()


def storage_for(settings: Settings, name: str | None = None) -> Storage:
    """The configured store, or the one named (where an existing document was written)."""
    name = name or settings.document_storage
    if name == "s3":
        return ObjectStore(settings)
    return InstanceFolder(settings.instance_path / DOCUMENT_DIR)


def read_verified(settings: Settings, storage_name: str, key: str, sha256: str) -> bytes:
    """A stored document's bytes, checked against the sha256 recorded when it was attached."""
    data = storage_for(settings, storage_name).get(key)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise StoredDocumentCorrupt(f"the stored file {key} does not match its recorded sha256 {sha256}")
    return data
