"""Change control: is a model update material, minor, or does it depend on the audit?

Compares two model-version records along the aspects the 2022 NMPA registration-review principles
name (algorithm-driven vs data-driven updates) plus the deployment context. Algorithm-driven
changes and changes of intended use are material; data-driven changes are material only if
performance changes materially, which the audit's regression test against the approved baseline
decides (``depends_on_audit``); changes that cannot alter outputs are minor.

The retrieval knowledge base (the RAG corpus) is data the model answers from: replacing or re-indexing it is a
data-driven change like new fine-tuning data, never "minor". It is described by ``knowledge_base_digest`` or by a
knowledge-base entry of ``serving_config`` (where the web form and the API carry it, e.g. a corpus id or index
version); a change summary that says the knowledge base changed while no recorded field shows it is flagged too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from ..datafiles import StrictModel
from ..digests import same_base_model
from .descriptor import Descriptor

SOURCE = ("NMPA CMDE Guiding Principles for Registration Review of AI-based Medical Devices (2022), software "
          "updates: algorithm-driven updates are significant; data-driven updates are significant when "
          "performance evaluation results change materially")
#: Serving settings that cannot change what the model answers (capacity and placement only).
NEUTRAL_SERVING_KEYS = frozenset({"max_num_seqs", "tensor_parallel_size", "pipeline_parallel_size", "replicas",
                                  "gpu_memory_utilization", "port", "host", "max_num_batched_tokens",
                                  "distributed_executor_backend", "enable_prefix_caching"})
#: Words of a ``serving_config`` key (split at ``_``, ``-``, ``.`` and case changes) that name the retrieval corpus.
KNOWLEDGE_BASE_KEY_WORDS = frozenset({"knowledge", "kb", "rag", "retrieval", "retriever", "corpus", "vector",
                                      "vectors", "embedding", "embeddings", "index", "documents"})
#: Words in a change summary that say the knowledge base changed (English and Chinese).
KNOWLEDGE_BASE_WORDS = ("knowledge base", "knowledge-base", "rag", "retrieval", "corpus", "vector store",
                        "vector database", "embedding index", "知识库", "检索", "语料", "向量库", "向量数据库")
#: Descriptor fields whose change changes the intended use or the risk class.
USE_DEFINING_FIELDS = ("scenario", "intended_use", "users", "output_visible_to",
                       "outputs_used_for_diagnosis_or_treatment", "input_data", "assisted_decision_making",
                       "autonomy", "issues_prescriptions", "public_facing", "personal_information",
                       "cross_border_transfer", "human_genetic_resources", "severity_if_wrong", "time_critical",
                       "medical_purpose", "anonymised")


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
    #: sha256 (or version id) of the retrieval knowledge base the deployment answers from; empty: none recorded.
    knowledge_base_digest: str = ""
    #: What the submitter says changed (free text); read only to catch a knowledge-base change no field records.
    change_summary: str = ""
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

    if not same_base_model(previous.base_model, new.base_model):
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
    if previous.knowledge_base_digest != new.knowledge_base_digest:
        note("knowledge_base", "depends_on_audit", "data-driven update: retrieval knowledge base "
                                                   f"{previous.knowledge_base_digest[:12] or 'none'} → "
                                                   f"{new.knowledge_base_digest[:12] or 'none'}")
    if previous.quantization != new.quantization:
        note("quantization", "depends_on_audit", f"quantization {previous.quantization or 'none'} → "
                                                 f"{new.quantization or 'none'}")
    if previous.system_prompt_digest != new.system_prompt_digest:
        note("system_prompt", "depends_on_audit", "system prompt changed")
    if previous.tokenizer_digest != new.tokenizer_digest:
        note("tokenizer", "depends_on_audit", "tokenizer or chat template changed")
    serving_changed = sorted(k for k in set(previous.serving_config) | set(new.serving_config)
                             if previous.serving_config.get(k) != new.serving_config.get(k))
    knowledge_keys = [k for k in serving_changed if _names_knowledge_base(k)]
    if knowledge_keys:
        note("knowledge_base", "depends_on_audit", "data-driven update: retrieval knowledge base settings changed: "
                                                   + ", ".join(knowledge_keys))
    behavioural = [k for k in serving_changed if k not in NEUTRAL_SERVING_KEYS and k not in knowledge_keys]
    if behavioural:
        note("serving_config", "depends_on_audit", "serving settings that can change outputs: " + ", ".join(behavioural))
    elif capacity := [k for k in serving_changed if k not in knowledge_keys]:
        note("serving_config", "minor", "capacity-only serving settings: " + ", ".join(capacity))
    if previous.weights_digest != new.weights_digest and not any(
            f.aspect in {"base_model", "architecture", "finetune_data", "quantization"} for f in findings):
        note("weights", "depends_on_audit", "weights changed (retraining or re-fine-tuning on the same data categories)")
    if not any(f.aspect == "knowledge_base" for f in findings) and _mentions_knowledge_base(new.change_summary):
        note("knowledge_base", "depends_on_audit", "the change summary mentions the retrieval knowledge base, but no "
                                                   "recorded digest or setting shows the change: treated as a "
                                                   "data-driven update")
    if not findings:
        note("none", "minor", "no change to weights, prompt, tokenizer, knowledge base, data or intended use")
    level = max((f.level for f in findings), key=_ORDER.__getitem__)
    return {
        "materiality": level,
        "reasons": [f.reason for f in findings if f.level == level] + [f.reason for f in findings if f.level != level],
        "findings": [{"aspect": f.aspect, "level": f.level, "reason": f.reason} for f in findings],
        "source": SOURCE,
        "previous": previous.version_label,
        "new": new.version_label,
    }


def _names_knowledge_base(key: str) -> bool:
    """A serving setting that selects or configures the retrieval corpus (a RAG change is a data change)."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()
    return any(word in KNOWLEDGE_BASE_KEY_WORDS for word in re.split(r"[^a-z0-9]+", words))


def _mentions_knowledge_base(summary: str) -> bool:
    """Whether free text says the knowledge base changed; English words are matched whole ("rag", not "storage")."""
    lowered = summary.lower()
    return any(re.search(rf"\b{re.escape(word)}\b", lowered) if word.isascii() else word in lowered
               for word in KNOWLEDGE_BASE_WORDS)
