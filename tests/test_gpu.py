"""The real vLLM path, end to end, on a small random-weight model built here (no download).

Marked ``gpu``: skipped cleanly without CUDA or without the optional ``vllm`` extra.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from governance import digests
from governance.audit import prompts, runner
from governance.audit.items import ItemSet, load_items

pytestmark = pytest.mark.gpu


def _cuda() -> bool:
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


if not _cuda():
    pytest.skip("needs CUDA and the vllm extra (pip install -e '.[gpu]')", allow_module_level=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from .support.tiny_model import build

    return build(tmp_path_factory.mktemp("model") / "tiny-llama")


@pytest.fixture(scope="module")
def vllm_backend(model_dir):
    from governance.audit.backends import VLLMBackend

    engine = VLLMBackend(str(model_dir), seed=7, max_model_len=4096, gpu_memory_utilization=0.3,
                         enforce_eager=True)
    yield engine
    engine.close()


def test_constrained_choice_self_test_and_metadata(vllm_backend):
    assert vllm_backend.self_test()["self_test"] == "passed"
    info = vllm_backend.describe()
    assert info["backend"] == "vllm" and info["vllm"].startswith("0.24") and info["gpu"]


def test_every_choice_item_answers_within_its_labels(vllm_backend, tmp_path):
    bank = load_items("builtin")
    subset = ItemSet(tuple(bank.items[:120]), "subset", bank.digest)
    store = runner.FileStore(tmp_path / "r.json", {"subset": 120})
    throughput = runner.execute(subset, vllm_backend, store, lang="zh", seed=7, batch=50)
    rows = {row["item_id"]: row for row in store.full_rows()}
    assert len(rows) == 120 and throughput.items == 120
    for item in subset.items:
        row = rows[item.item_id]
        if item.item_type == "behavior":
            assert row["raw_output"] is not None and row["valid"]
        else:  # a random model, but constrained decoding keeps every answer inside the item's labels
            assert row["valid"], row
            assert set(row["answer"]) <= set(item.labels)
            prompt = prompts.build(item, "zh", 7)
            assert row["logprobs"] and set(row["logprobs"]) & set(prompt.choices)


def test_over_long_prompts_fail_visibly(vllm_backend):
    item = load_items("builtin").items[0]
    long = item.model_copy(update={"stem": item.stem.model_copy(update={"zh": "很长的问题" * 3000})})
    [(_, response)] = list(vllm_backend.stream([prompts.build(long, "zh", 7)]))
    assert "exceeds the model context" in response.error


def test_weights_digest_is_measured_from_the_folder(model_dir):
    digest = digests.weights_digest(model_dir)
    assert len(digest) == 64 and digest == digests.weights_digest(model_dir)
    assert digests.tokenizer_digest(model_dir)


def test_govern_audit_run_with_the_vllm_backend(model_dir, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNANCE_")} | {"GOVERNANCE_INSTANCE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "governance.cli", "audit", "run", "--items", "builtin", "--backend",
                             "vllm", "--model", str(model_dir), "--max-model-len", "4096", "--gpu-memory-utilization",
                             "0.3", "--enforce-eager", "--out", str(out), "--quiet"], cwd=Path(__file__).resolve().parent.parent,
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["overall"]["n"] == len(load_items("builtin"))
    assert data["metadata"]["backend"] == "vllm" and data["metadata"]["gpu"]
    assert data["metadata"]["items_per_second"] > 0
