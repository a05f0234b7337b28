"""Audit throughput side by side with a bare client, start-up, memory and the cost of the verdict.

    python benchmarks/audit_throughput.py [--items 12000] [--reps 2] [--out benchmarks/results/audit_throughput.json]

Every contender talks to the same OpenAI-compatible stub, run as a process of its own
(``python -m tests.support.openai_stub``), and every rate is the stub's **server-side in-run rate**: chat
requests answered / (last answer - first arrival), the backend's one-request self-test excluded. Contenders, in
turn (reversed on odd repetitions):

- ``govern``: ``govern audit run --backend openai`` as its own process: prompting, HTTP, scoring, persisting the
  results file in batches;
- ``bare``: the floor: an asyncio client on raw sockets (one keep-alive HTTP/1.1 connection per slot) that
  sends the exact bodies govern sends, pre-serialised, and parses each reply's JSON, nothing else;
- ``lm-eval`` (with ``--lm-eval PATH``, the ``lm_eval`` executable of a separate environment:
  ``pip install 'lm-eval[api]'``): lm-evaluation-harness's ``local-chat-completions`` model with
  ``num_concurrent`` equal to the concurrency, offline, on a ``generate_until`` task over the same prompt texts
  (``max_gen_toks: 4``; its own request bodies, without govern's choice constraint).

Configurations: 50 ms latency at concurrency 32 (physical limit 640 items/s), 0 ms at 32, 50 ms at 128 (limit
2,560/s). Also measured: CPU seconds per 1,000 items and peak RSS of each process (``os.wait4``), govern's peak
RSS at four times the bank, the time from launch to govern's first request, ``govern --help``, and the verdict
(summary, floors, the paired regression with exact McNemar and weighted Holm) on the results.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics as stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIGS = ((0.05, 32), (0.0, 32), (0.05, 128))


# --- the bare client (run as `audit_throughput.py --bare BODIES HOST PORT CONCURRENCY`) ---------------------
async def _bare(bodies: list[bytes], host: str, port: int, concurrency: int) -> int:
    work = list(reversed(bodies))
    answered = 0

    async def slot() -> None:
        nonlocal answered
        reader, writer = await asyncio.open_connection(host, port)
        head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        while work:
            body = work.pop()
            writer.write(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)
            headers = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in headers.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            reply = json.loads(await reader.readexactly(length))
            if reply["choices"][0]["message"]["content"]:
                answered += 1
        writer.close()

    await asyncio.gather(*(slot() for _ in range(concurrency)))
    return answered


def bare_main(bodies_file: str, host: str, port: str, concurrency: str) -> None:
    bodies = [line.encode() for line in Path(bodies_file).read_text().splitlines()]
    answered = asyncio.run(_bare(bodies, host, int(port), int(concurrency)))
    assert answered == len(bodies), (answered, len(bodies))


# --- the harness --------------------------------------------------------------------------------------------
def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    memory = ""
    if Path("/proc/meminfo").exists():
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 2**20:.0f} GiB"
    return {"cpu": model, "cores": os.cpu_count(), "memory": memory, "python": platform.python_version(),
            "system": platform.platform(), "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": _commit()}


def bank_file(n: int, folder: Path) -> Path:
    from governance.audit.items import load_items, write_items

    base = [i for i in load_items("builtin").items if i.item_type in ("mcq_single", "mcq_multi")]
    items = [base[k % len(base)].model_copy(update={"item_id": f"{base[k % len(base)].item_id}-r{k // len(base)}"})
             for k in range(n)]
    path = folder / f"bank-{n}.jsonl"
    write_items(items, path)
    return path


def bodies_file(bank: Path, folder: Path) -> Path:
    """The exact request bodies govern sends for this bank (zh, seed 1), one JSON document per line."""
    from governance.audit import prompts
    from governance.audit.backends import OpenAIBackend
    from governance.audit.items import load_items

    backend = OpenAIBackend("http://127.0.0.1:1/v1", "stub-model")
    lines = [json.dumps(backend._body(prompts.build(item, "zh", 1)), ensure_ascii=False)
             for item in load_items(bank).items]
    path = folder / f"{bank.stem}.bodies"
    path.write_text("\n".join(lines))
    return path


class Stub:
    """The stub in a process of its own; ``stats()`` reads its in-run rate, ``reset()`` starts a new one."""

    def __init__(self, latency: float):
        self.port = _free_port()
        self.process = subprocess.Popen([sys.executable, "-m", "tests.support.openai_stub", "--port", str(self.port),
                                         "--latency", str(latency)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        self.process.stdout.readline()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def _call(self, method: str) -> dict:
        request = urllib.request.Request(f"{self.base_url}/stats", method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    def reset(self) -> None:
        self._call("POST")

    def stats(self) -> dict:
        return self._call("GET")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


#: GNU time reports its child's peak RSS. A child forked from this (large) harness inherits the harness's peak as
#: its own starting ``ru_maxrss`` (Linux carries the high-water mark across fork and exec), so the command is
#: started by the small ``time`` process instead and its figure read back.
GNU_TIME = Path("/usr/bin/time")


def measured(command: list[str], env: dict | None = None) -> dict:
    """Run ``command``; its wall time, CPU seconds (user + system, its children included) and peak RSS."""
    began = time.perf_counter()
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        launcher = [str(GNU_TIME), "-f", "%M", "-o", rss.name] if GNU_TIME.exists() else []
        process = subprocess.Popen([*launcher, *command], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            raise SystemExit(f"{command[:4]} exited {process.returncode}")
        peak_kb = int(rss.read().split()[-1]) if launcher else usage.ru_maxrss
    return {"wall_s": time.perf_counter() - began, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": peak_kb / 1024}


def _govern_env(folder: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNANCE_")}
    env["GOVERNANCE_INSTANCE"] = str(folder)
    return env


def govern(stub: Stub, bank: Path, concurrency: int, folder: Path, tag: str) -> dict:
    out = folder / f"results-{tag}.json"
    command = [str(ROOT / ".venv/bin/govern"), "audit", "run", "--items", str(bank), "--backend", "openai",
               "--base-url", stub.base_url, "--model", "stub-model", "--concurrency", str(concurrency),
               "--out", str(out), "--quiet"]
    return {**measured(command, _govern_env(folder)), "results": str(out)}


def bare(stub: Stub, bodies: Path, concurrency: int) -> dict:
    return measured([sys.executable, __file__, "--bare", str(bodies), "127.0.0.1", str(stub.port), str(concurrency)])


def lm_eval_task(bank: Path, folder: Path) -> Path:
    """An lm-eval task folder: a ``generate_until`` task over the user texts govern sends for this bank."""
    from governance.audit import prompts
    from governance.audit.items import load_items

    task = folder / "lmtask"
    task.mkdir(exist_ok=True)
    data = task / "prompts.jsonl"
    with data.open("w", encoding="utf-8") as handle:
        for item in load_items(bank).items:
            built = prompts.build(item, "zh", 1)
            text = "\n\n".join(m["content"] for m in built.messages if m["role"] == "user")
            handle.write(json.dumps({"prompt": text, "target": "".join(item.answer or [])}, ensure_ascii=False) + "\n")
    (task / "govbench.yaml").write_text(
        "task: govbench\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: generate_until\n"
        'doc_to_text: "{{prompt}}"\n'
        'doc_to_target: "{{target}}"\n'
        "generation_kwargs:\n  until: []\n  max_gen_toks: 4\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n", encoding="utf-8")
    return task


def lm_eval(executable: str, stub: Stub, task: Path, concurrency: int, folder: Path, tag: str) -> dict:
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HOME": str(folder / "hf")}
    command = [executable, "--model", "local-chat-completions", "--model_args",
               f"model=stub-model,base_url={stub.base_url}/chat/completions,num_concurrent={concurrency},"
               "max_retries=3,tokenized_requests=False", "--tasks", "govbench", "--include_path", str(task),
               "--apply_chat_template", "--output_path", str(folder / f"lmout-{tag}")]
    return measured(command, env)


def contest(bank: Path, bodies: Path, n: int, reps: int, folder: Path, lm_eval_executable: str | None = None) -> list[dict]:
    rows = []
    task = lm_eval_task(bank, folder) if lm_eval_executable else None
    names = ["govern", "bare"] + (["lm-eval"] if lm_eval_executable else [])
    for latency, concurrency in CONFIGS:
        stub = Stub(latency)
        runs: dict[str, list[dict]] = {name: [] for name in names}
        try:
            for rep in range(reps):
                order = names if rep % 2 == 0 else list(reversed(names))
                for name in order:
                    stub.reset()
                    tag = f"{latency}-{concurrency}-{rep}"
                    run = (govern(stub, bank, concurrency, folder, tag) if name == "govern"
                           else lm_eval(lm_eval_executable, stub, task, concurrency, folder, tag) if name == "lm-eval"
                           else bare(stub, bodies, concurrency))
                    seen = stub.stats()
                    assert seen["answered"] == n, (name, seen)
                    run["items_per_second"] = seen["items_per_second"]
                    runs[name].append(run)
        finally:
            stub.close()
        limit = concurrency / latency if latency else None
        entry = {"latency_ms": latency * 1000, "concurrency": concurrency, "items": n,
                 "physical_limit_items_per_second": limit}
        for name, series in runs.items():
            rates = [r["items_per_second"] for r in series]
            entry[name] = {"items_per_second_each": [round(r, 1) for r in rates],
                           "items_per_second_median": round(stat.median(rates), 1),
                           "share_of_limit": round(stat.median(rates) / limit, 3) if limit else None,
                           "cpu_s_per_1000_items": round(stat.median(r["cpu_s"] for r in series) / n * 1000, 3),
                           "peak_rss_mb": round(max(r["peak_rss_mb"] for r in series), 1),
                           "wall_s_whole_process": [round(r["wall_s"], 2) for r in series]}
        entry["govern_to_bare_paired"] = [round(g["items_per_second"] / b["items_per_second"], 3)
                                          for g, b in zip(runs["govern"], runs["bare"], strict=True)]
        entry["govern_to_bare_median"] = round(stat.median(entry["govern_to_bare_paired"]), 3)
        if "lm-eval" in runs:
            entry["govern_to_lm_eval_paired"] = [round(g["items_per_second"] / m["items_per_second"], 3)
                                                 for g, m in zip(runs["govern"], runs["lm-eval"], strict=True)]
        rows.append(entry)
        print(json.dumps(entry), flush=True)
    return rows


def start_up(bank: Path, folder: Path, reps: int) -> dict:
    """Seconds from launching `govern audit run` to the stub's first request (GET /v1/models), and `govern --help`."""
    firsts = []
    for rep in range(reps):
        port = _free_port()
        arrival: list[float] = []

        import threading
        from http.server import BaseHTTPRequestHandler, HTTPServer

        class FirstRequest(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                arrival.append(time.perf_counter())
                self.send_response(503)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_):
                pass

        server = HTTPServer(("127.0.0.1", port), FirstRequest)
        threading.Thread(target=server.handle_request, daemon=True).start()
        began = time.perf_counter()
        finished = subprocess.run([str(ROOT / ".venv/bin/govern"), "audit", "run", "--items", str(bank), "--backend",
                                   "openai", "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "stub-model",
                                   "--out", str(folder / f"startup-{rep}.json"), "--quiet"], cwd=ROOT, env=_govern_env(folder),
                                  capture_output=True, text=True)
        server.server_close()
        if not arrival:
            raise SystemExit(f"govern audit run never reached the endpoint: {finished.stderr[-2000:]}")
        firsts.append(arrival[0] - began)
    helps = []
    for _ in range(reps):
        began = time.perf_counter()
        subprocess.run([str(ROOT / ".venv/bin/govern"), "--help"], cwd=ROOT, env=_govern_env(folder),
                       capture_output=True, check=True)
        helps.append(time.perf_counter() - began)
    return {"first_request_s_median": round(stat.median(firsts), 3), "first_request_s_each": [round(x, 3) for x in firsts],
            "govern_help_s_median": round(stat.median(helps), 3), "govern_help_s_each": [round(x, 3) for x in helps]}


def verdict_cost(results: Path, bank: Path) -> dict:
    """The verdict of the fast-track policy on ``results`` with a paired baseline (1 in 7 answers flipped)."""
    from governance.audit import policy as policies
    from governance.audit import verdict
    from governance.audit.items import load_items

    rows = json.loads(results.read_text())["items"]
    baseline = [dict(r, correct=not r["correct"]) if i % 7 == 0 else r for i, r in enumerate(rows)]
    frozen = policies.load_policy(ROOT / "regulations/policy_fast_track.yaml")
    plan = policies.plan(frozen, load_items(bank))
    timings = []
    for _ in range(5):
        began = time.perf_counter()
        outcome = verdict.evaluate(frozen, plan, rows, baseline_rows=baseline, baseline_expected=True)
        timings.append(time.perf_counter() - began)
    return {"results": len(rows), "verdict": outcome["verdict"], "seconds_median_of_5": round(stat.median(timings), 4),
            "seconds_first": round(timings[0], 4)}


def memory(arguments: argparse.Namespace, folder: Path) -> dict:
    """govern's peak RSS auditing a bank of ``--memory-items`` items, and a quarter of that (flat = the same)."""
    big = bank_file(arguments.memory_items, folder)
    stub = Stub(0.0)
    try:
        run = govern(stub, big, 32, folder, "memory")
        found = {"items": arguments.memory_items, "govern_peak_rss_mb": round(run["peak_rss_mb"], 1),
                 "items_per_second": round(stub.stats()["items_per_second"], 1)}
        small = bank_file(arguments.memory_items // 4, folder)
        run_small = govern(stub, small, 32, folder, "memory-small")
        found["govern_peak_rss_mb_at_quarter"] = round(run_small["peak_rss_mb"], 1)
    finally:
        stub.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=12000)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--memory-items", type=int, default=48000)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--lm-eval", dest="lm_eval", help="the lm_eval executable of a separate environment "
                                                          "(pip install 'lm-eval[api]'): adds it as a contender")
    parser.add_argument("--skip-memory", action="store_true", help="leave out the memory and start-up runs")
    parser.add_argument("--memory-only", action="store_true",
                        help="only govern's peak RSS at --memory-items and a quarter of it (memory does not depend on "
                             "what else the machine runs; the rates do)")
    arguments = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    subprocess.run([str(ROOT / ".venv/bin/govern"), "init"], cwd=ROOT, env=_govern_env(folder), check=True,
                   capture_output=True)
    if arguments.memory_only:
        report = {"machine": machine(), "command": " ".join(["python", "benchmarks/audit_throughput.py",
                                                             *sys.argv[1:]]), "memory": memory(arguments, folder)}
        text = json.dumps(report, indent=2)
        print(text)
        if arguments.out:
            arguments.out.write_text(text + "\n")
        return
    bank = bank_file(arguments.items, folder)
    bodies = bodies_file(bank, folder)
    report = {"machine": machine(), "command": " ".join(["python", "benchmarks/audit_throughput.py", *sys.argv[1:]]),
              "yardstick": "the stub's server-side in-run rate (chat requests / (last answer - first arrival))",
              "throughput": contest(bank, bodies, arguments.items, arguments.reps, folder, arguments.lm_eval)}
    if arguments.lm_eval:
        version = subprocess.run([str(Path(arguments.lm_eval).with_name("python")), "-c",
                                  "import importlib.metadata as m; print(m.version('lm_eval'))"],
                                 capture_output=True, text=True).stdout.strip()
        report["lm_eval"] = {"version": version, "model": "local-chat-completions", "task": "generate_until, "
                             "max_gen_toks 4, the same prompt texts", "offline": True}
    if arguments.skip_memory:
        text = json.dumps(report, indent=2)
        print(text)
        if arguments.out:
            arguments.out.write_text(text + "\n")
        return
    report["memory"] = memory(arguments, folder)
    report["start_up"] = start_up(bank_file(20, folder), folder, 5)
    report["verdict"] = verdict_cost(folder / "results-0.0-32-0.json", bank)
    text = json.dumps(report, indent=2)
    print(text)
    if arguments.out:
        arguments.out.write_text(text + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--bare":
        bare_main(*sys.argv[2:])
    else:
        main()
