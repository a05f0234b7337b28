"""Recall and precision of the rule-based de-identifier on its shipped labelled synthetic set, and its throughput.

    python benchmarks/deid_recall.py [--repeat 5] [--out benchmarks/results/deid_recall.json]

Runs :func:`governance.deid.evaluate` on ``governance/deid/validation/synthetic.jsonl`` (200 Chinese and 200 English
queries, written by ``scripts/make_deid_validation.py``): span-level recall (a labelled span counts only when spans
of its type cover all of it), the share removed by spans of any type, and precision, overall, by type, by language
and by both. Throughput is records per second of :func:`governance.deid.scrub_record` over the same texts, each as a
two-field record (the text as prompt, and again as context), median of ``--repeat`` passes in this process.
No identifier, synthetic or not, is printed or written: only counts and rates.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "system": platform.platform(), "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": commit}


def throughput(texts: list[str], repeat: int) -> dict:
    from governance.deid import scrub_record

    seconds = []
    for _ in range(repeat):
        began = time.perf_counter()
        for text in texts:
            scrub_record({"prompt": text, "context": text})
        seconds.append(time.perf_counter() - began)
    median = statistics.median(seconds)
    return {"records": len(texts), "fields_per_record": 2, "repeat": repeat,
            "seconds_each": [round(s, 4) for s in seconds], "records_per_second": round(len(texts) / median, 1),
            "characters_per_second": round(2 * sum(map(len, texts)) / median)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "deid_recall.json")
    arguments = parser.parse_args()

    from governance.deid import evaluate, load_validation

    records = load_validation()
    began = time.perf_counter()
    evaluation = evaluate(records)
    evaluate_seconds = time.perf_counter() - began
    report = {
        "machine": machine(),
        "command": "python benchmarks/deid_recall.py " + " ".join(sys.argv[1:]),
        **evaluation,
        "evaluate_seconds": round(evaluate_seconds, 3),
        "throughput": throughput([record.text for record in records], arguments.repeat),
    }
    text = json.dumps(report, indent=1, ensure_ascii=False)
    print(text)
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
