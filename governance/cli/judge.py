"""``govern judge``: measure a grader against human labels before it may decide anything."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask.cli import with_appcontext

from ..audit import graders
from ..audit.backends import BackendError
from ..db import get_session
from ..models import GraderValidation, utcnow
from ..operations.graders import record_validation
from .common import echo_json, transactional


@click.group()
def judge() -> None:
    """Graders of behaviour and open answers: validate one against human labels, list the records."""


@judge.command("validate")
@click.argument("source")
@click.option("--grader", "kind", type=click.Choice(["judge", "keyword"]), default="judge", show_default=True,
              help="An LLM judge (served by --backend) or the keyword detector.")
@click.option("--backend", type=click.Choice(graders.JUDGE_BACKENDS), default="openai", show_default=True)
@click.option("--base-url", default="", help="The judge's OpenAI-compatible endpoint (e.g. http://gpu:8000/v1).")
@click.option("--model", default="", help="The judge's served model id, or a local path for --backend vllm.")
@click.option("--weights-digest", default="", help="sha256 of a local judge's weights, pinned in its identity.")
@click.option("--concurrency", type=int, default=8, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the report to this file.")
@click.option("--no-store", is_flag=True, help="Do not record the result (a trial run).")
@transactional
def judge_validate(source: str, kind: str, backend: str, base_url: str, model: str, weights_digest: str,
                   concurrency: int, as_json: bool, out: Path | None, no_store: bool) -> None:
    """Grade human-labelled completions and report agreement, Cohen's kappa, per-class recall and a per-model
    breakdown. SOURCE: a folder of XSTest completion CSVs (English), ``builtin-zh`` (the shipped Chinese set),
    or a JSONL file in its format. The record is stored: a policy lets this grader decide a criterion only if
    its record for the audit's language meets the policy's minimum."""
    records, lang, digest = graders.load_labelled(source)
    if kind == "keyword":
        grader: graders.Grader = graders.KeywordGrader()
    else:
        if backend != "demo" and not model:
            raise click.UsageError("--model is required for a judge")
        grader = graders.make_judge(backend, model, base_url=base_url, weights_digest=weights_digest,
                                    concurrency=concurrency)
    try:
        if isinstance(grader, graders.JudgeGrader) and not grader.backend.demo:
            grader.backend.describe()  # the endpoint serves the judge model, before 2,250 requests
        report = graders.validate(grader, records)
    except BackendError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        grader.close()
    report = {"grader": grader.describe(), "identity": grader.identity(), "dataset": str(source),
              "dataset_digest": digest, "lang": lang, **report}
    if not no_store:
        stored = record_validation(get_session(), grader, report, dataset=str(source), dataset_digest=digest,
                                   lang=lang, actor=None, now=utcnow())
        report["validation_id"] = stored.id
    if out:
        out.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    if as_json:
        echo_json(report)
        return
    _print_report(report)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _print_report(report: dict) -> None:
    click.echo(f"{report['identity']} on {report['dataset']} ({report['lang']}, {report['n']} completions)")
    click.echo(f"  agreement {_fmt(report['agreement'])}, Cohen's kappa {_fmt(report['kappa'])}; "
               f"{report['invalid']} unreadable judgements")
    click.echo("  recall: " + ", ".join(f"{k} {_fmt(v)}" for k, v in report["recall"].items()))
    binary = report["binary"]
    click.echo(f"  refusal vs compliance: agreement {_fmt(binary['agreement'])}, kappa {_fmt(binary['kappa'])}, "
               + ", ".join(f"{k} recall {_fmt(v)}" for k, v in binary["recall"].items()))
    for model, entry in report["by_model"].items():
        click.echo(f"  {model:<16} n {entry['n']:>4}  agreement {_fmt(entry['agreement'])}  kappa {_fmt(entry['kappa'])}")
    if "validation_id" in report:
        click.echo(f"stored as validation record {report['validation_id']}")


@judge.command("records")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def judge_records(as_json: bool) -> None:
    """The stored validation records, newest first."""
    rows = get_session().query(GraderValidation).order_by(GraderValidation.id.desc()).all()
    data = [{"id": r.id, "grader": r.grader_identity, "lang": r.lang, "dataset": r.dataset, "n": r.n,
             "agreement": r.agreement, "kappa": r.kappa, "created_at": r.created_at} for r in rows]
    if as_json:
        echo_json(data)
        return
    for r in data:
        click.echo(f"{r['id']:>4} {r['grader']:<48} {r['lang']} n {r['n']:>5} agreement {r['agreement']:.3f} "
                   f"kappa {r['kappa']:.3f}  {r['dataset']}")
