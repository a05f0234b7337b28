"""Is the model in production the one the committee approved? The served files' weights digest against
the approved version's.

Where the files are: the version's endpoint when it is a local model folder (vLLM offline), or the
``weights_path`` of its serving configuration (the folder an OpenAI-compatible server loads, mounted
where the scheduler runs). Demo endpoints and remote servers without a ``weights_path`` cannot be
measured; the check says so and the re-audit records it, rather than pretending to have verified.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .. import digests
from ..models import ModelVersion


@dataclass(frozen=True)
class IntegrityCheck:
    status: str  # "match" | "mismatch" | "unverifiable" | "unreadable"
    approved_digest: str
    served_digest: str | None
    measured_at: str
    detail: str

    @property
    def mismatch(self) -> bool:
        return self.status == "mismatch"

    def as_dict(self) -> dict:
        return asdict(self)


def weights_location(version: ModelVersion) -> Path | None:
    configured = (version.serving_config or {}).get("weights_path")
    if configured:
        return Path(str(configured))
    endpoint = version.endpoint.strip()
    if endpoint and "://" not in endpoint:
        return Path(endpoint)
    return None


def check_served_model(version: ModelVersion) -> IntegrityCheck:
    location = weights_location(version)
    if location is None:
        return IntegrityCheck("unverifiable", version.weights_digest, None, "",
                              f"endpoint {version.endpoint or '(none)'} exposes no model files; set serving_config "
                              "weights_path to the folder the server loads to verify its digest")
    try:
        served = digests.weights_digest(location)
    except (FileNotFoundError, PermissionError) as exc:
        # Not proof of a swapped model (a mount may be down): the chair is told, nothing is suspended.
        return IntegrityCheck("unreadable", version.weights_digest, None, str(location),
                              f"the model files cannot be read at {location}: {exc}")
    if served != version.weights_digest:
        return IntegrityCheck("mismatch", version.weights_digest, served, str(location),
                              f"the files at {location} have weights digest {served}, the approved version "
                              f"{version.version_label} has {version.weights_digest}")
    return IntegrityCheck("match", version.weights_digest, served, str(location),
                          f"the files at {location} match the approved weights digest")
