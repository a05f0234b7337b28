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

from ..audit import graders, runner
from ..audit.backends import BackendError, make_backend
from ..audit.importers import FORMATS, import_many
from ..audit.items import (BUILTIN, DIMENSIONS, bank_quality_problems, load_items, load_items_compact, load_named,
                           stats, write_items)
from ..audit import stats as audit_stats
from ..audit.design import DeclineTest
from ..audit.policy import feasibility_problems, load_policy, operating_characteristics
from ..audit.policy import plan as policy_plan
from ..audit.verdict import evaluate
from ..config import load_settings, resolve_instance_path
from ..errors import GovernanceError
from .common import echo_json, transactional

# The database commands (runs, resume, cancel, verify) import the database layer when they run: `audit run`
# and the item commands need none of it, and start-up time is the first request's delay.


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


@items.command("lint")
@click.argument("file", callback=lambda _c, _p, v: _items_arg(v))
@click.option("--json", "as_json", is_flag=True)
def items_lint(file: str, as_json: bool) -> None:
    """The cue audit: can the gold of a single-answer item be found without reading its question? Stem-blind
    readers (option-text classifiers trained leave-one-dimension-out, and fixed rules) per dimension and language
    against chance; words over-represented in golds or distractors; the gold's length rank; near-duplicate stems.
    Exits non-zero when a reader beats chance by more than 10 points, or near-duplicates exist."""
    from ..audit.lint import lint as lint_bank  # scipy and numpy load only for the lint

    report = lint_bank(load_items(file))
    if as_json:
        echo_json(report)
    else:
        _print_lint(report)
    if not report["ok"]:
        raise click.exceptions.Exit(1)


def _print_lint(report: dict) -> None:
    click.echo(f"cue audit of {report['source']} (digest {report['digest'][:16]}…)")
    for lang, entry in report["languages"].items():
        click.echo(f"[{lang}] {entry['single_answer_items']} single-answer items")
        for name, baseline in entry["baselines"].items():
            flagged = baseline["dimensions_above_chance"]
            click.echo(f"  {name:<24} {baseline['accuracy']:6.1%}  chance {baseline['chance']:5.1%}  "
                       f"excess {baseline['excess']:+6.1%}" + (f"  above chance in: {', '.join(flagged)}" if flagged
                                                                else ""))
        ranks = entry["gold_length_rank"]
        click.echo("  gold's length rank (1 = longest): " + ", ".join(f"{k}: {v}" for k, v in ranks.items()))
        if entry["cue_features"]:
            click.echo("  over-represented: " + ", ".join(f"'{c['feature']}' {c['in_golds']} in golds / "
                                                           f"{c['in_distractors']} in distractors"
                                                           for c in entry["cue_features"][:8]))
    click.echo(f"near-duplicate stems: {len(report['near_duplicates'])}")
    for problem in report["problems"]:
        click.echo(f"PROBLEM: {problem}")
    click.echo("ok" if report["ok"] else f"{len(report['problems'])} problem(s)")


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
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--dimension", type=click.Choice(DIMENSIONS))
@click.option("--dimension-map", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--lang", type=click.Choice(["zh", "en"]), default="en", show_default=True,
              help="Language of plain-text formats that do not say (medqa).")
def items_import(files: tuple[Path, ...], fmt: str, out: Path, dimension: str | None, dimension_map: Path | None,
                 lang: str) -> None:
    """Convert one or several files of a dataset into one item set in the project's schema (validated item by
    item; ids unique across the files). MedSafetyBench uses the shipped map of its nine AMA principles to
    dimensions unless --dimension or --dimension-map is given."""
    imported = import_many(list(files), fmt, dimension=dimension, dimension_map=dimension_map, lang=lang)
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
@click.option("--judge-backend", type=click.Choice(["none", *graders.JUDGE_BACKENDS]), default="none",
              show_default=True, help="Grade behaviour and open answers with an LLM judge (else the keyword detector).")
@click.option("--judge-base-url", default="")
@click.option("--judge-model", default="")
@click.option("--judge-weights-digest", default="")
@click.option("--judge-record", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The judge's validation report (`govern judge validate --out`): with the policy's minimum met, "
                   "its behaviour rates gate; otherwise they are reported.")
@click.option("--quiet", is_flag=True)
def audit_run(items_path: str, backend: str, base_url: str, model: str, lang: str, concurrency: int, seed: int,
              policy_path: Path | None, baseline: Path | None, out: Path, batch: int, tensor_parallel_size: int,
              pipeline_parallel_size: int, distributed_executor_backend: str | None, max_model_len: int | None,
              gpu_memory_utilization: float, enforce_eager: bool, vllm_chunk: int, judge_backend: str,
              judge_base_url: str, judge_model: str, judge_weights_digest: str, judge_record: Path | None,
              quiet: bool) -> None:
    """Run an audit; running the same command again with the same --out resumes an interrupted run."""
    item_set = load_items_compact(items_path)  # read again chunk by chunk: memory flat in the bank's size
    policy = load_policy(policy_path) if policy_path else None
    baseline_data = json.loads(baseline.read_text(encoding="utf-8")) if baseline else None
    judge = None if judge_backend == "none" else graders.make_judge(
        judge_backend, judge_model, base_url=judge_base_url, weights_digest=judge_weights_digest,
        concurrency=concurrency)
    grader_choice = _cli_grader_choice(judge, judge_record, policy, model=model, base_url=base_url, lang=lang)
    config = {"items_digest": item_set.digest, "items_source": item_set.source, "backend": backend, "model": model,
              "base_url": base_url, "lang": lang, "seed": seed, "policy": policy["digest"] if policy else None,
              "baseline": baseline_data.get("metadata", {}).get("results_digest") if baseline_data else None,
              "grader": grader_choice["identity"]}
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
                                        on_progress=progress, grader=judge)
    except BackendError as exc:
        raise click.ClickException(f"{exc} (the results so far are kept; run the same command again to resume)") \
            from None
    finally:
        engine.close()
        if judge is not None:
            judge.close()
    rows = store.rows()
    baseline_rows = baseline_data.get("items") if baseline_data else None
    summary = audit_stats.summarise(rows, DIMENSIONS)
    result = {"demo": engine.demo, **({"DEMO": "deterministic demo backend: not a model, not evidence"}
                                       if engine.demo else {}), **summary}
    if policy:
        frozen = policy_plan(policy, item_set)
        demo_mode = load_settings(resolve_instance_path()).demo_mode
        judged = evaluate(policy, frozen, rows, baseline_rows=baseline_rows, baseline_expected=baseline is not None,
                          demo=engine.demo, demo_allowed=demo_mode, grader=grader_choice)
        result["policy"] = policy
        result["plan"] = frozen
        result["criteria"] = judged["criteria"]
        result["regression"] = judged["regression"]
        result["verdict"] = {k: judged[k] for k in ("verdict", "policy", "failing", "inconclusive")}
    elif baseline_rows:
        tests = [DeclineTest(f"decline:{d}", "dimension", (d,), 1.0) for d in DIMENSIONS]
        result["regression"] = audit_stats.paired(rows, baseline_rows, tests, 0.05)
    result["grader"] = grader_choice
    metadata = runner.reproducibility(info, item_set, seed=seed, lang=lang, started_at=started,
                                      finished_at=runner.now_iso(), throughput=throughput)
    metadata["results_digest"] = runner.results_digest(rows)
    result["metadata"] = metadata
    in_order = sorted(row["item_id"] for row in rows)
    del rows
    runner.write_results_atomically(out, result, ({k: row.get(k) for k in runner.RESULT_COLUMNS}
                                                  for row in store.full_rows(in_order)))
    store.remove()
    if not quiet:
        _print_summary(result)


def _cli_grader_choice(judge, record_path: Path | None, policy: dict | None, *, model: str, base_url: str,
                       lang: str) -> dict:
    """The grader of a CLI audit and whether it may decide: a judge with a validation report (for this judge and
    language) that meets the policy's minimum, and that is not the model under test."""
    grader = judge or graders.KeywordGrader()
    record = json.loads(record_path.read_text(encoding="utf-8")) if record_path else None
    why = ""
    if record is not None and (record.get("identity") != grader.identity() or record.get("lang") != lang):
        why = f"the validation report is for {record.get('identity')} ({record.get('lang')}), not this grader"
        record = None
    requirement = (policy or {}).get("judge") or {}
    gates, reason = graders.meets(record, requirement.get("min_agreement", 0.9), requirement.get("min_kappa", 0.8))
    if judge is not None and judge.model == model and judge.base_url.rstrip("/").removesuffix("/v1") == \
            base_url.rstrip("/").removesuffix("/v1"):
        gates, reason = False, "the judge is the model under test"
    summary = None
    if record is not None:
        summary = {k: record.get(k) for k in ("dataset", "dataset_digest", "lang", "n", "agreement", "kappa", "recall",
                                              "invalid")}
        summary["binary"] = {k: record.get("binary", {}).get(k) for k in ("agreement", "kappa", "confusion")}
    return {"behaviour": grader.kind, "identity": grader.identity(), "grader": grader.describe(),
            "validation": summary, "gates": gates, "why": why or reason}


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
    if result.get("regression"):
        reg = result["regression"]
        low, high = reg["overall"]["difference_ci95"]
        click.echo(f"against the baseline: Δ {reg['overall']['difference']:+.3f} [{low:+.3f}, {high:+.3f}] (Newcombe), "
                   f"{reg['overall']['worse']} answers worse and {reg['overall']['better']} better; declines: "
                   f"{', '.join(reg['significant_declines']) or 'none significant'}")
    if "verdict" in result:
        v = result["verdict"]
        click.echo(f"verdict ({v['policy']['id']} v{v['policy']['version']}): {v['verdict'].upper()}")
        for line in v["failing"] + v["inconclusive"]:
            click.echo(f"  - {line}")


@audit.command("show")
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--item", "item_id", help="Print one item's prompt, raw output, parsed answer and grading.")
@click.option("--json", "as_json", is_flag=True)
def audit_show(results: Path, item_id: str | None, as_json: bool) -> None:
    """Print an audit's results, or everything recorded about one item."""
    data = json.loads(results.read_text(encoding="utf-8"))
    if item_id:
        row = next((r for r in data.get("items", []) if r["item_id"] == item_id), None)
        if row is None:
            raise click.ClickException(f"no item '{item_id}' in {results}")
        if as_json:
            echo_json(row)
        else:
            print_item(row)
        return
    if as_json:
        echo_json({k: v for k, v in data.items() if k != "items"})
        return
    _print_summary(data)
    meta = data.get("metadata", {})
    click.echo(f"backend {meta.get('backend')} model {meta.get('model')}; items {meta.get('item_set_digest', '')[:16]}…;"
               f" seed {meta.get('seed')}; {meta.get('items_per_second')} items/s")


def print_item(row: dict) -> None:
    """One item's record in plain text: what was asked, what came back, how it was read and graded."""
    click.echo(f"{row['item_id']} ({row['dimension']}, {row['item_type']}, stage {row.get('stage', 1)})")
    for message in json.loads(row.get("prompt") or "[]"):
        click.echo(f"--- {message['role']}\n{message['content']}")
    click.echo(f"--- raw output\n{row.get('raw_output', '')}")
    click.echo(f"--- read as: {row.get('answer') or '—'}; gold {', '.join(row.get('gold') or [])}; "
               f"{'correct' if row.get('correct') else 'not correct'}; {'valid' if row.get('valid') else 'NOT VALID'}"
               + (f"; error: {row['error']}" if row.get("error") else ""))
    click.echo(f"--- graded by {row.get('grader')}")
    judgement = row.get("judgement") or {}
    for key in ("label", "harm", "score", "critical_missed", "criteria", "reasoning", "invalid"):
        if key in judgement:
            click.echo(f"  {key}: {judgement[key]}")
    if judgement.get("keyword"):
        click.echo(f"  keyword reading: {judgement['keyword']}")
    if judgement.get("raw"):
        click.echo(f"  judge's raw reply: {judgement['raw']}")


@audit.command("runs")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def audit_runs(as_json: bool) -> None:
    """Gate audits stored in this instance."""
    from sqlmodel import select

    from ..db import get_session
    from ..models import AuditRun

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
    from .. import jobs
    from ..audit.store import stale_runs
    from ..db import get_db, get_session
    from ..models import AuditRun

    session = get_session()
    targets = [run_id] if run_id else stale_runs(session, timedelta(minutes=stale_minutes))
    session.close()
    settings = current_app.config["GOVERNANCE"]
    for target in targets:
        try:
            jobs.run(get_db().engine, settings, "audit.run", {"run_id": target})
        except jobs.RetryLater as later:
            click.echo(f"audit {target}: {later} (it can be resumed in {later.seconds:.0f} s if that runner died)")
            continue
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
    from .. import eventlog
    from ..db import get_session
    from ..models import AuditRun

    run = get_session().get(AuditRun, run_id)
    if run is None:
        raise GovernanceError(f"no audit run {run_id}")
    if run.status not in {"queued", "running"}:
        raise GovernanceError(f"audit run {run_id} is {run.status}")
    run.cancel_requested = True
    eventlog.append(get_session(), "audit_cancel_requested", actor=None, submission_id=run.submission_id,
                    payload={"audit_run": run.id})
    click.echo(f"audit run {run_id}: cancellation requested")


@audit.command("verify")
@click.argument("run_id", type=int)
@with_appcontext
def audit_verify(run_id: int) -> None:
    """Recompute a gate audit's verdict from its stored item results and check every digest against the hash
    chain; exits non-zero naming the run when anything was changed after the fact."""
    from ..db import get_session
    from ..gate import verify_run
    from ..models import AuditRun

    session = get_session()
    run = session.get(AuditRun, run_id)
    if run is None:
        raise GovernanceError(f"no audit run {run_id}")
    problems = verify_run(session, run)
    if problems:
        raise click.ClickException("; ".join(problems))
    click.echo(f"audit run {run_id}: verdict '{run.verdict}' recomputed from {run.items_done} stored results; policy, "
               f"item set, seed and results digests match the chain")


@click.group()
def policy() -> None:
    """Gate policies: what each criterion can detect with the items it names."""


@policy.command("check")
@click.argument("policy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--items", "items_paths", multiple=True, callback=lambda _c, _p, v: [_items_arg(x) for x in v],
              help="Item sets to check it against (default: the sets the policy names; 'builtin' is the shipped bank).")
@click.option("--simulations", type=int, default=20000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def policy_check(policy_path: Path, items_paths: list[str], simulations: int, as_json: bool) -> None:
    """The operating characteristics of a policy with its items, computed before any run: P(pass) at and around
    each acceptable level, P(detect) for drops in a dimension and across a domain, P(false hold)."""
    loaded = load_policy(policy_path)
    if items_paths:
        item_set = load_named([(f"set{i}", path) for i, path in enumerate(items_paths)]) if len(items_paths) > 1 \
            else load_items(items_paths[0])
    else:
        sources = load_settings(resolve_instance_path()).item_sets
        item_set = load_named([(ref["name"], sources.get(ref["name"], ref["name"])) for ref in loaded["item_sets"]])
    frozen = policy_plan(loaded, item_set)
    table = operating_characteristics(loaded, frozen, simulations=simulations)
    problems = feasibility_problems(loaded, frozen)
    if as_json:
        echo_json({"policy": {k: loaded[k] for k in ("id", "version", "digest")}, "items": item_set.source,
                   "item_set_digest": item_set.digest, "operating_characteristics": table, "problems": problems})
    else:
        _print_characteristics(loaded, item_set, table, problems)
    if problems:
        sys.exit(1)


def _print_characteristics(loaded: dict, item_set, table: dict, problems: list[str]) -> None:
    click.echo(f"{loaded['id']} v{loaded['version']} ({loaded['digest'][:12]}…) with {len(item_set)} items "
               f"({item_set.source}, {item_set.digest[:12]}…)")
    click.echo("floors (P(pass) when the true accuracy is …):")
    for row in table["floors"]:
        p = row["p_pass"]
        click.echo(f"  {row['criterion']:<38} n={row['n']:<4} {row['rule']}; acceptable {row['levels']['acceptable']:.0%}:"
                   f" {p['acceptable']:.3f}, −5: {p['acceptable_minus_5']:.3f}, −10: {p['acceptable_minus_10']:.3f}, "
                   f"unacceptable {row['levels']['unacceptable']:.0%}: {p['unacceptable']:.3f}")
    for row in table["rates"]:
        click.echo(f"  {row['criterion']:<38} n={row['n']:<4} P(pass | acceptable) {row['p_pass_at_acceptable']:.3f}, "
                   f"P(fail | unacceptable) {row['p_fail_at_unacceptable']:.3f}")
    if table["declines"]:
        declines = table["declines"]
        click.echo(f"change control ({declines['method']}):")
        for row in declines["detect"]:
            where = f"one {row['group']} dimension ({row['dimension']}, n={row['n']})" if row["scope"] == "dimension" \
                else f"the whole {row['group']} domain (n={row['n']})"
            click.echo(f"  a {row['drop']:.0%} drop in {where}: detected " +
                       ", ".join(f"{v:.3f} at {k.replace('_', ' ')}" for k, v in row["p_detect"].items()))
        click.echo(f"  an unchanged model is held at most {declines['false_hold_bound']} (simulated: " +
                   ", ".join(f"{v:.4f} at {k.replace('_', ' ')}" for k, v in declines["false_hold_simulated"].items())
                   + ")")
    click.echo(f"a model at every acceptable level that did not change is held at most {table['false_hold_bound']:.4f} "
               "of the time (the sum of the declared false-hold rates)")
    for problem in problems:
        click.echo(f"PROBLEM: {problem}", err=True)
