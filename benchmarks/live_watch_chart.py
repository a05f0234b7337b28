"""The live watch's control chart on seeded simulated streams: how often it raises a false alarm on noise, and how
soon it signals a drift (the issue asks for the false-alarm rate over many seeded runs).

    python benchmarks/live_watch_chart.py [--runs 2000] [--samples 2000] [--out benchmarks/results/live_watch_chart.json]

For each approved hazard rate p0, ``--runs`` seeded streams of ``--samples`` graded interactions at p0 (noise)
and as many at three times p0 (the drift the chart is tuned to), through :func:`governance.monitoring.chart`'s
Bernoulli CUSUM with its designed limit; beside the measured shares, the exact run lengths of the integer chain.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.deid_recall import machine  # noqa: E402
from governance.monitoring import chart  # noqa: E402


def measure(baseline: float, runs: int, samples: int) -> dict:
    design = chart.design(baseline)
    false_alarms, delays = 0, []
    for seed in range(runs):
        rng = random.Random(seed)
        false_alarms += chart.first_signal((rng.random() < baseline for _ in range(samples)), design) is not None
        at = chart.first_signal((rng.random() < design.alarm_rate for _ in range(samples)), design)
        if at is not None:
            delays.append(at + 1)
    delays.sort()
    expected = 1 - (1 - 1 / design.arl_in_control) ** samples
    return {**design.as_dict(), "runs": runs, "samples_per_run": samples,
            "false_alarm_share": round(false_alarms / runs, 4), "false_alarm_share_expected": round(expected, 4),
            "drift_detected_share": round(len(delays) / runs, 4),
            "drift_delay_median": statistics.median(delays) if delays else None,
            "drift_delay_p90": delays[int(0.9 * (len(delays) - 1))] if delays else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "live_watch_chart.json")
    args = parser.parse_args()
    results = {"machine": machine(), "command": "python benchmarks/live_watch_chart.py " + " ".join(sys.argv[1:]),
               "charts": [measure(p, args.runs, args.samples) for p in (0.005, 0.01, 0.02, 0.05)]}
    args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    for entry in results["charts"]:
        print(f"p0 {entry['baseline_rate']:.3f}: false alarms {entry['false_alarm_share']:.2%} of {entry['runs']} runs "
              f"of {entry['samples_per_run']} (expected {entry['false_alarm_share_expected']:.2%}); drift to "
              f"{entry['alarm_rate']:.3f} detected in {entry['drift_detected_share']:.1%}, median after "
              f"{entry['drift_delay_median']} samples")


if __name__ == "__main__":
    main()
