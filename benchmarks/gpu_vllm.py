"""GPU benchmark: the vLLM backend of `govern audit run` against a bare `LLM.chat` on the same prompts.

Builds a random-weight model locally (no download), expands the shipped bank to N items (copies with new
ids, so option shuffles differ), then on one loaded engine times:
  bare   — one `LLM.chat(all prompts, per-prompt SamplingParams)` call;
  ours   — `runner.execute` with the vllm backend: prompts built, the same call(s), every answer scored,
           persisted to a results file in batches; chunk=0 (one call) and chunk=2048 (checkpoints).
Prints and writes JSON: items/s, tokens/s and our overhead relative to bare.

    python benchmarks/gpu_vllm.py --items 12000 --size small --out gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from governance.audit import prompts as prompt_builder  # noqa: E402
from governance.audit import runner  # noqa: E402
from governance.audit.backends import VLLMBackend  # noqa: E402
from governance.audit.items import ItemSet, digest_items, load_items  # noqa: E402


def expanded_bank(n: int) -> ItemSet:
    base = load_items("builtin").items
    items = []
    copy = 0
    while len(items) < n:
        for item in base:
            if len(items) == n:
                break
            items.append(item.model_copy(update={"item_id": f"{item.item_id}-r{copy}"}))
        copy += 1
    return ItemSet(tuple(items), f"builtin x{copy}", digest_items(items))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=12000)
    parser.add_argument("--size", default="small", choices=["tiny", "small"])
    parser.add_argument("--lang", default="zh")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--enforce-eager", action="store_true")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    arguments = parser.parse_args()
    # Spawn, never fork, vLLM's engine-core process: training the tokenizer below starts threads, and a
    # fork of a multi-threaded process can deadlock (the first attempt on an H100 hung exactly there).
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")

    from vllm import LLM

    from tests.support.tiny_model import build

    work = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    model = build(work / "model", arguments.size)
    bank = expanded_bank(arguments.items)
    started = time.perf_counter()
    llm = LLM(model=str(model), seed=0, max_model_len=4096, gpu_memory_utilization=arguments.gpu_memory_utilization,
              enforce_eager=arguments.enforce_eager)
    load_seconds = time.perf_counter() - started
    backend = VLLMBackend(str(model), llm=llm, seed=0)
    prompts = [prompt_builder.build(item, arguments.lang, 0) for item in bank.items]

    # Warm-up (compilation, CUDA graphs, grammar caches) outside the timings.
    llm.chat([list(p.messages) for p in prompts[:256]], sampling_params=[backend.sampling_params(p) for p in prompts[:256]],
             use_tqdm=False)

    def bare() -> dict:
        began = time.perf_counter()
        params = [backend.sampling_params(p) for p in prompts]
        outputs = llm.chat([list(p.messages) for p in prompts], sampling_params=params, use_tqdm=False)
        seconds = time.perf_counter() - began
        tokens = sum(len(o.prompt_token_ids) + len(o.outputs[0].token_ids) for o in outputs)
        return {"seconds": seconds, "items_per_second": len(prompts) / seconds, "tokens_per_second": tokens / seconds,
                "tokens": tokens}

    def ours(chunk: int) -> dict:
        backend.chunk = chunk
        out = work / f"ours-{chunk}.json"
        store = runner.FileStore(out, {"bench": chunk})
        began = time.perf_counter()
        throughput = runner.execute(bank, backend, store, lang=arguments.lang, seed=0, batch=500)
        seconds = time.perf_counter() - began
        rows = store.rows()
        summary = runner.summarise(rows, bank, baseline_rows=None, margin=0.03, seed=0)
        tokens = throughput.prompt_tokens + throughput.completion_tokens
        return {"chunk": chunk, "seconds": seconds, "items_per_second": len(rows) / seconds,
                "tokens_per_second": tokens / seconds, "tokens": tokens,
                "invalid_rate": summary["invalid_rate"], "accuracy": summary["overall"]["accuracy"]}

    results = {"items": len(prompts), "model": arguments.size, "load_seconds": load_seconds,
               "enforce_eager": arguments.enforce_eager}
    import torch
    import vllm

    results.update(vllm=vllm.__version__, torch=torch.__version__, gpu=torch.cuda.get_device_name(0))
    for key, step in (("bare", bare), ("ours_one_call", lambda: ours(0)), ("ours_chunk_2048", lambda: ours(2048)),
                      ("bare_again", bare)):
        results[key] = step()
        print(key, json.dumps(results[key]), flush=True)
    reference = min(results["bare"]["seconds"], results["bare_again"]["seconds"])
    for key in ("ours_one_call", "ours_chunk_2048"):
        results[key]["overhead_vs_bare"] = results[key]["seconds"] / reference - 1
    text = json.dumps(results, indent=2)
    print(text, flush=True)
    if arguments.out:
        arguments.out.write_text(text)
    backend.close()


if __name__ == "__main__":
    main()
