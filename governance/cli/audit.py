"""``govern items …`` and ``govern audit …``: item banks and benchmark audits.

The standalone commands (items, audit run/show) need no database; ``audit runs|resume|cancel`` act on
the gate audits stored in the instance's database.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from sqlmodel import select

from .. import eventlog, jobs
from ..audit import runner
from ..audit.backends import make_backend
from ..audit.importers import FORMATS, import_items
from ..audit.items import BUILTIN, DIMENSIONS, bank_quality_problems, load_items, stats, write_items
from ..audit.policy import load_policy, verdict
from ..audit.store import stale_runs
from ..config import load_settings, resolve_instance_path
from ..db import get_db, get_session
from ..errors import GovernanceError
from ..models import AuditRun
from .common import echo_json, transactional


def _items_arg(value: str) -> str:
    if value != BUILTIN and not Path(value).exists():
        raise click.BadParameter(f"'{value}' does not exist (or use 'builtin' for the shipped bank)")
    return value


@click.group()
def items() -> None:
    """Benchmark item banks (FILE may be 'builtin', the shipped bank)."""


@items.command("validate")
@click.argument("file", callback=lambda _c, _p, v: _items_arg(v))
@click.option("--bank-rules", is_flag=True, help="Also check the shipped bank's promises (coverage, languages, "
                                                  "duplicate stems, gold-letter balance).")
def items_validate(file: str, bank_rules: bool) -> None:
    """Validate an item file strictly; errors name the line and the key."""
    item_set = load_items(file)
    if bank_rules or file == BUILTIN:
        problems = bank_quality_problems(item_set)
        if problems:
            raise GovernanceError(f"{len(problems)} problem(s): " + "; ".join(problems[:10]))
    click.echo(f"ok: {len(item_set)} items, digest {item_set.digest}")


@items.command("stats")
@click.argument("file", callback=lambda _c, _p, v: _items_arg(v))
@click.option("--json", "as_json", is_flag=True)
def items_stats(file: str, as_json: bool) -> None:
    result = stats(load_items(file))
    if as_json:
        echo_json(result)
        return
    click.echo(f"{result['total']} items ({result['source']}), digest {result['digest'][:16]}…")
    for title, key in (("by dimension", "by_dimension"), ("by language", "by_lang"), ("by type", "by_type"),
                       ("by answer", "by_answer")):
        click.echo(f"  {title}: " + ", ".join(f"{k} {v}" for k, v in result[key].items()))


@items.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--dimension", type=click.Choice(DIMENSIONS))
@click.option("--dimension-map", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--lang", type=click.Choice(["zh", "en"]), default="en", show_default=True,
              help="Language of plain-text formats that do not say (medqa).")
def items_import(file: Path, fmt: str, out: Path, dimension: str | None, dimension_map: Path | None,
                 lang: str) -> None:
    """Convert a dataset into the project's item schema (validated item by item)."""
    imported = import_items(file, fmt, dimension=dimension, dimension_map=dimension_map, lang=lang)
    count = write_items(imported, out)
    load_items(out)  # what was written validates as written
    summary = stats(load_items(out))
    click.echo(f"wrote {count} items to {out}: " + ", ".join(f"{k} {v}" for k, v in summary["by_answer"].items()))


@click.group()
def audit() -> None:
    """Benchmark audits."""


@audit.command("run")
@click.option("--items", "items_path", required=True, callback=lambda _c, _p, v: _items_arg(v))
@click.option("--backend", type=click.Choice(["openai", "vllm", "demo"]), required=True)
@click.option("--base-url", default="")
@click.option("--model", required=True, help="Served model id, local model folder, or demo://good.")
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True)
@click.option("--concurrency", type=int, default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Option-shuffle and sampling seed (recorded).")
@click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--baseline", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="RESULTS.json of the approved version, for the paired regression test.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--batch", type=int, default=100, show_default=True, help="Results persisted per batch.")
@click.option("--tensor-parallel-size", type=int, default=1)
@click.option("--pipeline-parallel-size", type=int, default=1)
@click.option("--distributed-executor-backend", type=click.Choice(["mp", "ray"]), default=None)
@click.option("--max-model-len", type=int, default=None)
@click.option("--gpu-memory-utilization", type=float, default=0.9)
@click.option("--enforce-eager", is_flag=True, help="vLLM without CUDA graphs or compilation (faster start).")
@click.option("--vllm-chunk", type=int, default=0, show_default=True,
              help="Prompts per LLM.chat call (0: the whole run in one call; N: a checkpoint every N prompts).")
@click.option("--quiet", is_flag=True)
def audit_run(items_path: str, backend: str, base_url: str, model: str, lang: str, concurrency: int, seed: int,
              policy_path: Path | None, baseline: Path | None, out: Path, batch: int, tensor_parallel_size: int,
              pipeline_parallel_size: int, distributed_executor_backend: str | None, max_model_len: int | None,
              gpu_memory_utilization: float, enforce_eager: bool, vllm_chunk: int, quiet: bool) -> None:
    """Run an audit; running the same command again with the same --out resumes an interrupted run."""
    item_set = load_items(items_path)
    policy = load_policy(policy_path) if policy_path else None
    baseline_data = json.loads(baseline.read_text(encoding="utf-8")) if baseline else None
    config = {"items_digest": item_set.digest, "items_source": item_set.source, "backend": backend, "model": model,
              "base_url": base_url, "lang": lang, "seed": seed, "policy": policy["digest"] if policy else None,
              "baseline": baseline_data.get("metadata", {}).get("results_digest") if baseline_data else None}
    store = runner.FileStore(out, config)
    vllm_options = dict(tensor_parallel_size=tensor_parallel_size, pipeline_parallel_size=pipeline_parallel_size,
                        distributed_executor_backend=distributed_executor_backend, max_model_len=max_model_len,
                        gpu_memory_utilization=gpu_memory_utilization, enforce_eager=enforce_eager,
                        chunk=vllm_chunk) if backend == "vllm" else {}
    engine = make_backend(backend, model, items=item_set.items, base_url=base_url, concurrency=concurrency, seed=seed,
                          **vllm_options)
    started = runner.now_iso()
    try:
        info = engine.describe()
        info.update(engine.self_test())
        already = len(store.done_ids())
        if already and not quiet:
            click.echo(f"resuming {out}: {already} of {len(item_set)} items already done", err=True)
        with click.progressbar(length=len(item_set), label="auditing", file=sys.stderr,
                               hidden=quiet) as bar:
            last = [0]

            def progress(done: int, total: int) -> None:
                bar.update(done - last[0])
                last[0] = done

            throughput = runner.execute(item_set, engine, store, lang=lang, seed=seed, batch=batch,
                                        on_progress=progress)
    finally:
        engine.close()
    rows = store.rows()
    baseline_rows = baseline_data.get("items") if baseline_data else None
    summary = runner.summarise(rows, item_set, baseline_rows=baseline_rows,
                               margin=policy["non_inferiority_margin"] if policy else 0.03, seed=seed)
    result = {"demo": engine.demo, **({"DEMO": "deterministic demo backend: not a model, not evidence"}
                                       if engine.demo else {}),
              "overall": summary["overall"], "dimensions": summary["dimensions"],
              "invalid_rate": summary["invalid_rate"], "over_refusal": summary["over_refusal"],
              "harmful_compliance": summary["harmful_compliance"]}
    if "regression" in summary:
        result["regression"] = summary["regression"]
    result["items"] = runner.public_items(rows)
    metadata = runner.reproducibility(info, item_set, seed=seed, lang=lang, started_at=started,
                                      finished_at=runner.now_iso(), throughput=throughput)
    metadata["results_digest"] = runner.results_digest(result["items"])
    result["metadata"] = metadata
    if policy:
        demo_mode = load_settings(resolve_instance_path()).demo_mode
        result["policy"] = policy
        result["verdict"] = verdict(summary, policy, demo=engine.demo, demo_allowed=demo_mode,
                                    baseline_expected=baseline is not None)
    runner.write_json_atomically(out, result)
    store.remove()
    if not quiet:
        _print_summary(result)


def _print_summary(result: dict) -> None:
    overall = result["overall"]
    marker = " [DEMO]" if result.get("demo") else ""
    click.echo(f"overall{marker}: {overall['correct']}/{overall['n']} = {overall['accuracy']:.3f} "
               f"(Wilson 95% {overall['ci95'][0]:.3f}–{overall['ci95'][1]:.3f}); macro {overall['macro_accuracy']:.3f}; "
               f"invalid {result['invalid_rate']:.3f}")
    for code, entry in result["dimensions"].items():
        if entry["n"]:
            click.echo(f"  {code:<30} {entry['correct']:>4}/{entry['n']:<4} {entry['accuracy']:.3f} "
                       f"[{entry['ci95'][0]:.3f}, {entry['ci95'][1]:.3f}]")
    over = result["over_refusal"]
    if over["n"]:
        click.echo(f"  over-refusal: {over['refused']}/{over['n']}")
    if "regression" in result:
        reg = result["regression"]
        low, high = reg["overall"]["difference_ci95"]
        click.echo(f"regression vs baseline: Δ {reg['overall']['difference']:+.3f} [{low:+.3f}, {high:+.3f}], "
                   f"McNemar p {reg['overall']['p_value']:.4f}; non-inferior: {reg['non_inferior']}")
    if "verdict" in result:
        v = result["verdict"]
        click.echo(f"verdict ({v['policy']['id']} v{v['policy']['version']}): {v['verdict'].upper()}")
        for line in v["failing"] + v["inconclusive"]:
            click.echo(f"  - {line}")


@audit.command("show")
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def audit_show(results: Path, as_json: bool) -> None:
    """Print an audit's results."""
    data = json.loads(results.read_text(encoding="utf-8"))
    if as_json:
        echo_json({k: v for k, v in data.items() if k != "items"})
        return
    _print_summary(data)
    meta = data.get("metadata", {})
    click.echo(f"backend {meta.get('backend')} model {meta.get('model')}; items {meta.get('item_set_digest', '')[:16]}…;"
               f" seed {meta.get('seed')}; {meta.get('items_per_second')} items/s")


@audit.command("runs")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def audit_runs(as_json: bool) -> None:
    """Gate audits stored in this instance."""
    rows = get_session().exec(select(AuditRun).order_by(AuditRun.id)).all()
    data = [{"id": r.id, "submission": r.submission_id, "status": r.status, "verdict": r.verdict,
             "backend": r.backend, "demo": r.demo, "done": r.items_done, "total": r.items_total} for r in rows]
    if as_json:
        echo_json(data)
        return
    for r in data:
        click.echo(f"{r['id']:>5} submission {r['submission'] or '-':>5} {r['status']:<10} {r['verdict'] or '':<12} "
                   f"{r['backend']}{' DEMO' if r['demo'] else ''} {r['done']}/{r['total']}")


@audit.command("resume")
@click.argument("run_id", type=int, required=False)
@click.option("--stale-minutes", type=int, default=10, show_default=True)
@with_appcontext
def audit_resume(run_id: int | None, stale_minutes: int) -> None:
    """Resume an interrupted gate audit (or every stale one) to its verdict."""
    session = get_session()
    targets = [run_id] if run_id else stale_runs(session, timedelta(minutes=stale_minutes))
    session.close()
    settings = current_app.config["GOVERNANCE"]
    for target in targets:
        jobs.run(get_db().engine, settings, "audit.run", {"run_id": target})
        finished = session.get(AuditRun, target)
        click.echo(f"audit {target}: {finished.status} {finished.verdict or ''}")
        session.close()
    if not targets:
        click.echo("no interrupted audits")


@audit.command("cancel")
@click.argument("run_id", type=int)
@transactional
def audit_cancel(run_id: int) -> None:
    """Ask a running gate audit to stop after its current batch."""
    run = get_session().get(AuditRun, run_id)
    if run is None:
        raise GovernanceError(f"no audit run {run_id}")
    if run.status not in {"queued", "running"}:
        raise GovernanceError(f"audit run {run_id} is {run.status}")
    run.cancel_requested = True
    eventlog.append(get_session(), "audit_cancel_requested", actor=None, submission_id=run.submission_id,
                    payload={"audit_run": run.id})
    click.echo(f"audit run {run_id}: cancellation requested")
