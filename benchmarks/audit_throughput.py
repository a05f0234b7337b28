"""Audit throughput against a local OpenAI-compatible server, and the cost of scoring and statistics.

    python benchmarks/audit_throughput.py [--items 12000] [--out results.json]

1. overhead: `govern audit run` (a separate process) on an N-item bank against a stub that answers at
   once, concurrency 32: items/s of the whole tool (prompting, HTTP, scoring, persistence).
2. concurrency: the same against a stub with a fixed 50 ms latency at concurrency 32 (ideal: 640 items/s).
3. statistics: summarise + regression (McNemar, Holm, paired bootstrap) of N results, in process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from governance.audit import runner  # noqa: E402
from governance.audit.items import load_items, write_items  # noqa: E402
from tests.support.openai_stub import StubConfig, StubServer  # noqa: E402


def bank_file(n: int, folder: Path) -> Path:
    base = load_items("builtin").items
    items = [base[k % len(base)].model_copy(update={"item_id": f"{base[k % len(base)].item_id}-r{k // len(base)}"})
             for k in range(n)]
    path = folder / f"bank-{n}.jsonl"
    write_items(items, path)
    return path


def audit_run(items: Path, latency: float, concurrency: int, folder: Path) -> dict:
    with StubServer(StubConfig(latency=latency)) as server:
        out = folder / f"results-{latency}.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNANCE_")}
        env["GOVERNANCE_INSTANCE"] = str(folder)
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "governance.cli", "audit", "run", "--items", str(items), "--backend",
                        "openai", "--base-url", server.base_url, "--model", "stub-model", "--concurrency",
                        str(concurrency), "--batch", "500", "--out", str(out), "--quiet"], cwd=ROOT, env=env, check=True)
        wall = time.perf_counter() - began
    data = json.loads(out.read_text())
    return {"latency_s": latency, "concurrency": concurrency, "items": data["overall"]["n"],
            "wall_seconds_including_start": round(wall, 2),
            "items_per_second_in_run": data["metadata"]["items_per_second"],
            "items_per_second_wall": round(data["overall"]["n"] / wall, 1), "results": out}


def statistics(results: Path) -> dict:
    data = json.loads(results.read_text())
    rows = data["items"]
    full = [{**r, "item_type": "mcq_single", "expected_behavior": "", "raw_output": "", "logprobs": {},
             "prompt_tokens": 0, "completion_tokens": 0, "latency_ms": 0.0} for r in rows]
    item_set = load_items(results.parent / f"bank-{len(rows)}.jsonl")
    baseline = [dict(r, correct=not r["correct"] if i % 7 == 0 else r["correct"]) for i, r in enumerate(full)]
    timings = []
    for _ in range(3):
        began = time.perf_counter()
        runner.summarise(full, item_set, baseline_rows=baseline, margin=0.03, seed=1)
        timings.append(time.perf_counter() - began)
    began = time.perf_counter()
    runner.summarise(full, item_set, baseline_rows=None, margin=0.03, seed=1)
    without = time.perf_counter() - began
    return {"results": len(full), "summary_seconds": round(without, 3),
            "summary_and_regression_seconds_best_of_3": round(min(timings), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=12000)
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    items = bank_file(arguments.items, folder)
    overhead = audit_run(items, 0.0, 32, folder)
    concurrency = audit_run(items, 0.05, 32, folder)
    report = {
        "machine": f"{os.cpu_count()} cores",
        "overhead": {k: v for k, v in overhead.items() if k != "results"},
        "concurrency": {**{k: v for k, v in concurrency.items() if k != "results"}, "ideal_items_per_second": 640,
                        "share_of_ideal": round(concurrency["items_per_second_in_run"] / 640, 3)},
        "statistics": statistics(overhead["results"]),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if arguments.out:
        arguments.out.write_text(text)


if __name__ == "__main__":
    main()
