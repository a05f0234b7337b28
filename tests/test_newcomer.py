"""A newcomer's first minutes: `make run` on another port, and a version form that says what endpoint to give
(offering the demo endpoints in demo mode only). The demo's progress lines are tested in tests/test_cli.py,
beside the demo instance it builds."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from governance.audit.backends import DEMO_ACCURACY
from governance.models import ModelVersion, Submission
from governance.web.forms import DEMO_ENDPOINTS

from .test_chinese_interface import english_sentences
from .test_web import login

ROOT = Path(__file__).resolve().parent.parent


def _make_run(*variables: str) -> str:
    """The command line `make run` would serve with (make -n prints the recipe without running it)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    printed = subprocess.run(["make", "-n", "run", *variables], cwd=ROOT, capture_output=True, text=True, timeout=60,
                             check=True).stdout
    return next(line for line in printed.splitlines() if " run --host " in line)


def test_make_run_serves_on_the_port_and_host_given():
    assert _make_run().endswith("govern run --host 127.0.0.1 --port 5000")
    assert _make_run("PORT=5077").endswith("govern run --host 127.0.0.1 --port 5077")
    assert _make_run("PORT=5077", "HOST=0.0.0.0").endswith("govern run --host 0.0.0.0 --port 5077")


def test_the_form_offers_every_demo_endpoint_the_demo_backend_knows():
    assert sorted(choice.value for choice in DEMO_ENDPOINTS) == sorted(f"demo://{key}" for key in DEMO_ACCURACY)


def _version_page(client, factory) -> str:
    deployment = factory.deployment()
    login(client, factory.person("submitter"))
    response = client.get(f"/deployments/{deployment.id}/versions/new")
    assert response.status_code == 200
    return response.data.decode()


def test_the_version_form_explains_the_endpoint_and_offers_the_demo_endpoints_in_demo_mode(client, factory):
    page = _version_page(client, factory)
    assert "OpenAI-compatible server" in page and "endpoint_allow_hosts" in page
    assert 'list="demo-endpoints"' in page and '<datalist id="demo-endpoints">' in page
    for choice in DEMO_ENDPOINTS:
        assert f'<option value="{choice.value}">' in page and f"<code>{choice.value}</code>" in page


def test_the_endpoint_help_and_the_demo_endpoints_are_chinese_for_a_chinese_reader(client, factory):
    deployment = factory.deployment()
    login(client, factory.person("submitter"))
    client.post("/locale/zh_CN", data={"next": "/"})
    page = client.get(f"/deployments/{deployment.id}/versions/new").data.decode()
    assert "OpenAI 兼容服务器" in page and "演示模式" in page and "通过审计的演示模型" in page
    assert [s for s in english_sentences(page) if s not in deployment.name] == []  # its name is its owner's data


@pytest.mark.parametrize("app_overrides", [{"demo_mode": False}])
def test_outside_demo_mode_the_form_explains_the_endpoint_but_offers_no_demo_endpoint(client, factory):
    page = _version_page(client, factory)
    assert "OpenAI-compatible server" in page and "endpoint_allow_hosts" in page
    assert "demo://" not in page and "datalist" not in page and 'list="' not in page


def test_a_version_with_an_offered_demo_endpoint_is_accepted_and_its_case_created(client, factory, session):
    deployment = factory.deployment()
    login(client, factory.person("submitter"))
    response = client.post(f"/deployments/{deployment.id}/versions/new", data={
        "kind": "initial", "version_label": "v1", "base_model": "Qwen/Qwen2.5-7B-Instruct",
        "weights_digest": "a" * 64, "endpoint": "demo://good", "submit_now": "y"})
    assert response.status_code == 303, response.data.decode()[-2000:]
    version = session.execute(select(ModelVersion).where(ModelVersion.deployment_id == deployment.id)).scalar_one()
    assert version.endpoint == "demo://good"
    case = session.execute(select(Submission).where(Submission.model_version_id == version.id)).scalar_one()
    assert case.state == "submitted"
