"""``govern submit``: the client ML pipelines run to put a model version through review from CI.

It computes the weights and tokenizer digests of the model folder, creates the submission through the
API, and with ``--wait`` follows it until the audit verdict and the decision; it exits 0 only if the
version is approved, and can write a JUnit XML report of the gate criteria for the CI system.

Exit status: 0 approved (or, with ``--until verdict``, audit passed), 1 not approved, 2 the submission could
not be made or followed (no token, token refused, server unreachable, input refused), 3 timed out.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import click
import httpx

from .. import digests

APPROVED = {"approved", "approved_with_conditions"}
NOT_APPROVED = {"disapproved", "revisions_required", "withdrawn", "returned", "held", "deferred"}
EXIT_NOT_APPROVED, EXIT_ERROR, EXIT_TIMEOUT = 1, 2, 3


class SubmitError(click.ClickException):
    """The submission could not be made or followed (exit 2); ``transient`` failures may be retried."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


class Client:
    def __init__(self, server: str, token: str, timeout: float = 30.0):
        self.http = httpx.Client(base_url=server.rstrip("/") + "/api/v1", timeout=timeout,
                                 headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})

    def call(self, method: str, path: str, **kwargs) -> Any:
        try:
            reply = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise SubmitError(f"cannot reach {self.http.base_url}: {exc}", transient=True) from None
        try:
            body = reply.json()
        except ValueError:
            body = None
        if not isinstance(body, (dict, list)):
            kind = reply.headers.get("content-type", "no content type").split(";")[0]
            raise SubmitError(f"{method} {self.http.base_url}{path.lstrip('/')}: HTTP {reply.status_code} with "
                              f"{kind}, not the review service's JSON: is --server the service's base URL?",
                              transient=reply.status_code >= 500)
        if reply.status_code >= 400:
            message = body.get("error") if isinstance(body, dict) else None
            raise SubmitError(f"{method} {path}: HTTP {reply.status_code}: {message or reply.reason_phrase}",
                              transient=reply.status_code >= 500)
        return body


def _config(model_dir: Path) -> dict[str, Any]:
    config = model_dir / "config.json"
    if not config.exists():
        return {}
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise SubmitError(f"{config} is not valid JSON: {exc}") from None
    return data if isinstance(data, dict) else {}


def _base_model(model_dir: Path) -> str:
    """The base model's Hugging Face id from config.json's ``_name_or_path``, never a display name: a local path
    or a missing field is refused (pass ``--base-model ORG/NAME``), since a name that differs from the approved
    version's reads as a change of base model."""
    name = str(_config(model_dir).get("_name_or_path") or "").strip()
    if not name:
        raise SubmitError(f"{model_dir}/config.json names no _name_or_path: pass --base-model with the Hugging Face "
                          "id of the base model (e.g. Qwen/Qwen2.5-7B-Instruct)")
    if name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists():
        raise SubmitError(f"config.json's _name_or_path is a local path ({name}), not a model id: pass --base-model "
                          "with the Hugging Face id of the base model (e.g. Qwen/Qwen2.5-7B-Instruct)")
    return digests.model_id(name)


def _file_digest(path: Path | None) -> str:
    return digests.file_sha256(path) if path else ""


def _quantization_settings(model_dir: Path) -> dict[str, str]:
    """The whole quantization configuration, hashed: two quantizations with the same method but other settings
    (bits, group size) are different models."""
    quantization = _config(model_dir).get("quantization_config")
    if not isinstance(quantization, dict):
        return {}
    canonical = json.dumps(quantization, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return {"quantization_config_sha256": hashlib.sha256(canonical).hexdigest()}


def _architecture(model_dir: Path) -> str:
    """From config.json: a change that sent none would read as a change of architecture (material)."""
    return str((_config(model_dir).get("architectures") or [""])[0])[:100]


def _quantization(model_dir: Path) -> str:
    quantization = _config(model_dir).get("quantization_config")
    return str(quantization.get("quant_method") or "")[:40] if isinstance(quantization, dict) else ""


def junit(path: Path, case: dict[str, Any], *, decision_awaited: bool = True, timed_out: str = "") -> None:
    """One test per gate criterion, plus the decision (skipped when not waited for): what CI dashboards show. An
    audit that could not run and a wait that timed out are errors of the process, never failures of the model."""
    audit = case.get("audit") or {}
    criteria = audit.get("criteria") or []
    suite = ElementTree.Element("testsuite", name=f"governance submission {case['id']}",
                                tests=str(len(criteria) + 1 + (audit.get("status") == "error")))
    failures = 0
    errors = 0
    if audit.get("status") == "error":
        # the audit could not run: an error of the infrastructure, never a failure of the model
        test = ElementTree.SubElement(suite, "testcase", classname="audit.gate", name="audit")
        ElementTree.SubElement(test, "error", message=audit.get("error") or "the audit could not run").text = \
            (audit.get("error") or "") + " — not a finding about the model; the case waits at the audit gate"
        errors += 1
    for criterion in criteria:
        test = ElementTree.SubElement(suite, "testcase", classname="audit.gate", name=criterion["criterion"])
        detail = f"value {criterion['value']} against {criterion['threshold']}; {criterion.get('detail', '')}"
        if criterion["outcome"] == "fail":
            failures += 1
            ElementTree.SubElement(test, "failure", message=detail).text = detail
        elif criterion["outcome"] in {"inconclusive", "second_stage"}:
            ElementTree.SubElement(test, "skipped", message=f"{criterion['outcome']}: " + detail)
        elif criterion["outcome"] == "reported":
            ElementTree.SubElement(test, "system-out").text = "reported, not gating: " + detail
    decision = ElementTree.SubElement(suite, "testcase", classname="review", name="decision")
    outcome = (case.get("decision") or {}).get("outcome") or case["state"]
    if timed_out:
        errors += 1
        ElementTree.SubElement(decision, "error", message=timed_out).text = \
            f"{timed_out} — not a finding about the model"
    elif not decision_awaited and outcome not in APPROVED | NOT_APPROVED:
        ElementTree.SubElement(decision, "skipped", message=f"not waited for (--until verdict): {outcome}")
    elif outcome not in APPROVED:
        failures += 1
        ElementTree.SubElement(decision, "failure", message=f"not approved: {outcome}").text = outcome
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    ElementTree.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


@click.command()
@click.option("--server", required=True, help="Base URL of the review service, e.g. https://irb.hospital.cn")
@click.option("--token-env", default="GOVERNANCE_TOKEN", show_default=True,
              help="Environment variable holding a 'submit' API token.")
@click.option("--deployment", "deployment_id", type=int, required=True)
@click.option("--version", "version_label", required=True)
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--change-summary", default="")
@click.option("--base-model", default=None, help="Default: from the folder's config.json.")
@click.option("--endpoint", default=None, help="Where the audit reaches the model (default: the model folder).")
@click.option("--served-model-id", default="")
@click.option("--system-prompt-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The system prompt the deployment serves with: its sha256 is submitted (a change of it is a change "
                   "of the model's behaviour).")
@click.option("--finetune-data-category", "data_categories", multiple=True,
              help="A category of the fine-tuning data (may be given several times); compared with the approved "
                   "version's to assess a change.")
@click.option("--kind", type=click.Choice(["auto", "initial", "change"]), default="auto", show_default=True)
@click.option("--wait", is_flag=True, help="Follow the case and exit 0 only if it is approved.")
@click.option("--until", type=click.Choice(["decision", "verdict"]), default="decision", show_default=True,
              help="With --wait: stop at the audit verdict (exit 0 on pass) or at the decision.")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="Seconds to wait at most.")
@click.option("--poll", type=float, default=5.0, show_default=True)
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False, path_type=Path))
def submit(server: str, token_env: str, deployment_id: int, version_label: str, model_dir: Path, change_summary: str,
           base_model: str | None, endpoint: str | None, served_model_id: str, system_prompt_file: Path | None,
           data_categories: tuple[str, ...],
           kind: str, wait: bool, until: str, timeout: float, poll: float, junit_path: Path | None) -> None:
    """Submit a model version for review from CI (initial deployment or change control)."""
    token = os.environ.get(token_env)
    if not token:
        raise SubmitError(f"no API token in ${token_env} (create one on your account page)")
    client = Client(server, token)
    deployment = client.call("GET", f"/deployments/{deployment_id}")
    if kind == "auto":
        kind = "change" if deployment.get("approved_version") else "initial"
    if kind == "change" and not change_summary:
        raise SubmitError("a change needs --change-summary")
    click.echo(f"computing the digest of {model_dir} …", err=True)
    version = {"version_label": version_label,
               "base_model": digests.model_id(base_model) if base_model else _base_model(model_dir),
               "system_prompt_digest": _file_digest(system_prompt_file),
               "serving_config": _quantization_settings(model_dir),
               "weights_digest": digests.weights_digest(model_dir), "tokenizer_digest": digests.tokenizer_digest(model_dir),
               "endpoint": endpoint or str(model_dir.resolve()), "served_model_id": served_model_id,
               "architecture": _architecture(model_dir), "quantization": _quantization(model_dir),
               "finetune_data_categories": list(data_categories), "change_summary": change_summary}
    case = client.call("POST", "/submissions", json={"deployment_id": deployment_id, "kind": kind,
                                                     "model_version": version, "submit": True,
                                                     "title": f"{deployment['name']} {version_label} ({kind})"[:300]})
    click.echo(f"submission {case['id']} ({kind}) {case['state']}: {server.rstrip('/')}{case['url']}")
    click.echo(f"weights digest {version['weights_digest']}")
    if not wait:
        return
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            case = client.call("GET", f"/submissions/{case['id']}")
        except SubmitError as exc:  # a restart or a network blip must not fail an hour-long wait
            if not exc.transient or time.monotonic() > deadline:
                raise
            click.echo(f"  {exc.message}; retrying", err=True)
            time.sleep(poll)
            continue
        audit = case.get("audit") or {}
        status = (case["state"], audit.get("status"), audit.get("percent"), audit.get("verdict"))
        if status != last:
            click.echo(f"  state {case['state']}; audit {audit.get('status') or '-'} {audit.get('percent', 0)}%"
                       + (f" verdict {audit['verdict']}" if audit.get("verdict") else ""), err=True)
            last = status
        done_by_verdict = until == "verdict" and audit.get("verdict") is not None and case["state"] != "auditing"
        if case["state"] in APPROVED | NOT_APPROVED or done_by_verdict:
            break
        if time.monotonic() > deadline:
            message = f"timed out after {timeout:.0f} s in state {case['state']}"
            click.echo(message, err=True)
            if junit_path:
                junit(junit_path, case, decision_awaited=until == "decision", timed_out=message)
            sys.exit(EXIT_TIMEOUT)
        time.sleep(poll)
    if junit_path:
        junit(junit_path, case, decision_awaited=until == "decision")
    approved = case["state"] in APPROVED or (until == "verdict" and audit.get("verdict") == "pass")
    for reason in audit.get("reasons") or []:
        click.echo(f"  - {reason}", err=True)
    click.echo(f"outcome: {case['state']}" + (f" (audit {audit.get('verdict')})" if audit.get("verdict") else ""))
    if not approved:
        sys.exit(EXIT_NOT_APPROVED)
