"""A deployment's descriptor: checked against its schema, and written with the columns copied from it.

Shared by the direct edit of a deployment never approved and by the approval of an amendment (the only ways the
descriptor of a deployment changes after its registration)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..classification.descriptor import canonical_sha256, descriptor_from_dict
from ..datafiles import DataFileError
from ..errors import GovernanceError
from ..models import Deployment


def validated(descriptor: dict[str, Any]) -> dict[str, Any]:
    """The descriptor as its schema reads it (defaults filled in); the error names the field."""
    try:
        return descriptor_from_dict(descriptor, "descriptor").model_dump()
    except DataFileError as exc:
        raise GovernanceError(f"descriptor: {exc.key or 'descriptor'}: {exc.message}") from None


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The descriptor fields whose value differs (a field one side lacks counts as changed)."""
    return sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))


def write_descriptor(deployment: Deployment, clean: dict[str, Any], *, now: datetime) -> None:
    """Make ``clean`` (already validated) the deployment's descriptor, with its digest and the columns lists filter
    on; the caller writes the event."""
    deployment.descriptor = dict(clean)
    deployment.descriptor_sha256 = canonical_sha256(clean)
    deployment.name, deployment.scenario = clean["name"], clean["scenario"]
    deployment.public_facing, deployment.generative = clean["public_facing"], clean["generative"]
    deployment.updated_at = now
