"""Change control: is a model update material, minor, or does it depend on the audit?

Compares two model-version records along the aspects the 2022 NMPA registration-review principles
name (algorithm-driven vs data-driven updates) plus the deployment context. Algorithm-driven
changes and changes of intended use are material; data-driven changes are material only if
performance changes materially, which the audit's regression test against the approved baseline
decides (``depends_on_audit``); changes that cannot alter outputs are minor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from ..datafiles import StrictModel
from .descriptor import Descriptor

SOURCE = ("NMPA CMDE Guiding Principles for Registration Review of AI-based Medical Devices (2022), software "
          "updates: algorithm-driven updates are significant; data-driven updates are significant when "
          "performance evaluation results change materially")
#: Serving settings that cannot change what the model answers (capacity and placement only).
NEUTRAL_SERVING_KEYS = frozenset({"max_num_seqs", "tensor_parallel_size", "pipeline_parallel_size", "replicas",
                                  "gpu_memory_utilization", "port", "host", "max_num_batched_tokens",
                                  "distributed_executor_backend", "enable_prefix_caching"})
#: Descriptor fields whose change changes the intended use or the risk class.
USE_DEFINING_FIELDS = ("scenario", "intended_use", "users", "output_visible_to",
                       "outputs_used_for_diagnosis_or_treatment", "input_data", "assisted_decision_making",
                       "autonomy", "issues_prescriptions", "public_facing", "personal_information",
                       "cross_border_transfer", "human_genetic_resources", "severity_if_wrong", "time_critical")


class ModelVersionRecord(StrictModel):
    """What change control compares (a model version as submitted)."""

    version_label: str
    base_model: str
    architecture: str = ""
    weights_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    tokenizer_digest: str = ""
    system_prompt_digest: str = ""
    quantization: str = ""
    serving_config: dict[str, Any] = {}
    finetune_data_categories: list[str] = []
    continuous_learning: bool = False
    descriptor: Descriptor | None = None


@dataclass(frozen=True)
class Finding:
    aspect: str
    level: str  # material | depends_on_audit | minor
    reason: str


_ORDER = {"minor": 0, "depends_on_audit": 1, "material": 2}


def assess_change(previous: ModelVersionRecord, new: ModelVersionRecord) -> dict[str, Any]:
    findings: list[Finding] = []

    def note(aspect: str, level: str, reason: str) -> None:
        findings.append(Finding(aspect, level, reason))

    if previous.base_model != new.base_model:
        note("base_model", "material", f"algorithm-driven update: base model {previous.base_model} → {new.base_model}")
    if previous.architecture != new.architecture:
        note("architecture", "material", f"algorithm-driven update: architecture {previous.architecture or '?'} → "
                                         f"{new.architecture or '?'}")
    if new.continuous_learning and not previous.continuous_learning:
        note("continuous_learning", "material", "continuous learning switched on: the algorithm is no longer locked")
    if previous.descriptor is not None and new.descriptor is not None:
        old, cur = previous.descriptor.model_dump(), new.descriptor.model_dump()
        changed = [f for f in USE_DEFINING_FIELDS if old[f] != cur[f]]
        if changed:
            note("intended_use", "material", "intended use or risk context changed: " + ", ".join(changed))
    added = sorted(set(new.finetune_data_categories) - set(previous.finetune_data_categories))
    removed = sorted(set(previous.finetune_data_categories) - set(new.finetune_data_categories))
    if added or removed:
        parts = ([f"added {', '.join(added)}"] if added else []) + ([f"removed {', '.join(removed)}"] if removed else [])
        note("finetune_data", "depends_on_audit", "data-driven update: fine-tuning data " + "; ".join(parts))
    if previous.quantization != new.quantization:
        note("quantization", "depends_on_audit", f"quantization {previous.quantization or 'none'} → "
                                                 f"{new.quantization or 'none'}")
    if previous.system_prompt_digest != new.system_prompt_digest:
        note("system_prompt", "depends_on_audit", "system prompt changed")
    if previous.tokenizer_digest != new.tokenizer_digest:
        note("tokenizer", "depends_on_audit", "tokenizer or chat template changed")
    serving_changed = sorted(k for k in set(previous.serving_config) | set(new.serving_config)
                             if previous.serving_config.get(k) != new.serving_config.get(k))
    behavioural = [k for k in serving_changed if k not in NEUTRAL_SERVING_KEYS]
    if behavioural:
        note("serving_config", "depends_on_audit", "serving settings that can change outputs: " + ", ".join(behavioural))
    elif serving_changed:
        note("serving_config", "minor", "capacity-only serving settings: " + ", ".join(serving_changed))
    if previous.weights_digest != new.weights_digest and not any(
            f.aspect in {"base_model", "architecture", "finetune_data", "quantization"} for f in findings):
        note("weights", "depends_on_audit", "weights changed (retraining or re-fine-tuning on the same data categories)")
    if not findings:
        note("none", "minor", "no change to weights, prompt, tokenizer, data or intended use")
    level = max((f.level for f in findings), key=_ORDER.__getitem__)
    return {
        "materiality": level,
        "reasons": [f.reason for f in findings if f.level == level] + [f.reason for f in findings if f.level != level],
        "findings": [{"aspect": f.aspect, "level": f.level, "reason": f.reason} for f in findings],
        "source": SOURCE,
        "previous": previous.version_label,
        "new": new.version_label,
    }
