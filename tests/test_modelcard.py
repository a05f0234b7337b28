"""Applied Model Cards (CHAI schema v0.2): the vendored schema accepts CHAI's own examples, an approved case's
card validates and carries the review record's facts, an unapproved version is refused, and a broken card is
rejected with the failing element named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree

from governance import queries
from governance.models import Deployment, ModelVersion
from governance.modelcard import NAMESPACE, NOT_PROVIDED, ModelCardInvalid, ModelCardRefused, validate
from governance.modelcard.chai import SCHEMA_FILE, schema

from .factories import PASSWORD

SHARED_EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "standards" / "chai-model-card" / "examples"
MC = {"mc": NAMESPACE}


@pytest.mark.skipif(not SHARED_EXAMPLES.is_dir(), reason="the shared CHAI examples are not checked out here")
@pytest.mark.parametrize("example", sorted(p.name for p in SHARED_EXAMPLES.glob("*.xml")) or ["none"])
def test_chai_examples_validate_against_the_vendored_schema(example):
    """A check of the validator itself: CHAI's published examples must pass the vendored XSD offline."""
    assert SCHEMA_FILE.is_file()
    document = etree.parse(str(SHARED_EXAMPLES / example))
    assert schema().validate(document), schema().error_log


@pytest.fixture
def approved(factory, session):
    case = factory.case_in("approved")
    return (case, session.get(Deployment, case.deployment_id), session.get(ModelVersion, case.model_version_id))


def test_approved_version_card_validates_and_carries_the_record(approved, runner, session, tmp_path):
    case, deployment, version = approved
    out = tmp_path / "card.xml"
    result = runner.invoke("modelcard", str(deployment.id), "--format", "chai-xml", "--out", str(out))
    assert result.exit_code == 0, result.output
    document = etree.parse(str(out))
    assert schema().validate(document), schema().error_log
    text = etree.tostring(document, encoding="unicode")
    assert version.weights_digest in document.findtext("mc:TrustIngredients/mc:AISystemFacts/mc:Security",
                                                       namespaces=MC)
    regulatory = document.findtext("mc:ReleaseInfo/mc:RegulatoryApproval", namespaces=MC)
    classification = queries.latest_classification(session, case).result
    assert f"China NMPA: {classification['nmpa']['status'].replace('_', ' ')}" in regulatory
    assert "US FDA" in regulatory and "EU AI Act" in regulatory
    overall = queries.latest_audit(session, case).summary["overall"]
    first = document.find("mc:KeyMetrics/mc:UsefulnessUsabilityEfficacy/mc:Results/mc:MetricResult", namespaces=MC)
    assert first.findtext("mc:Label", namespaces=MC).startswith(f"Overall accuracy (n={overall['n']}; Wilson 95% CI")
    assert json.loads(first.findtext("mc:ValueJson", namespaces=MC))["value"] == round(100 * overall["accuracy"], 2)
    assert "pass if at least" in text and NOT_PROVIDED in text  # the gate's rules; unknowns said, not invented

    as_json = runner.invoke("modelcard", str(deployment.id), "--version", version.version_label, "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    card = json.loads(as_json.output)["AppliedModelCard"]
    assert card["ReleaseInfo"]["ReleaseVersion"] == version.version_label
    assert version.weights_digest in card["TrustIngredients"]["AISystemFacts"]["Security"]


def test_a_version_that_is_not_approved_is_refused(factory, runner, session):
    case = factory.case_in("in_review")
    result = runner.invoke("modelcard", str(case.deployment_id), "--version",
                           session.get(ModelVersion, case.model_version_id).version_label)
    assert result.exit_code != 0
    assert "is not approved" in result.output and len(result.output.strip().splitlines()) == 1
    with pytest.raises(ModelCardRefused):
        from governance.modelcard import export
        export(session, factory.settings, session.get(Deployment, case.deployment_id), None, "json")


def test_an_element_removed_from_a_card_fails_validation_naming_it(approved, session, factory):
    from governance.modelcard import build_card, to_element

    _case, deployment, version = approved
    root = to_element(build_card(session, factory.settings, deployment, version))
    validate(root)
    facts = root.find("mc:TrustIngredients/mc:AISystemFacts", namespaces=MC)
    facts.remove(facts.find("mc:ModelType", namespaces=MC))
    with pytest.raises(ModelCardInvalid, match=r"/AppliedModelCard/TrustIngredients/AISystemFacts.*ModelType"):
        validate(root)


def test_the_registry_offers_the_card_for_download_to_compliance(approved, factory, client):
    compliance = factory.person("compliance")
    assert client.post("/login", data={"email": compliance.email, "password": PASSWORD}).status_code == 302
    page = client.get("/registry").get_data(as_text=True)
    link = f"/registry/{approved[1].id}/modelcard.xml"
    assert link in page
    response = client.get(link)
    assert response.status_code == 200 and response.mimetype == "application/xml"
    assert "attachment" in response.headers["Content-Disposition"]
    document = etree.fromstring(response.data)
    assert schema().validate(document), schema().error_log
    as_json = client.get(f"/registry/{approved[1].id}/modelcard.json")
    assert as_json.status_code == 200 and "AppliedModelCard" in json.loads(as_json.data)


def test_the_card_download_is_for_the_registry_roles_only(approved, factory, client):
    submitter = factory.person("submitter")
    assert client.post("/login", data={"email": submitter.email, "password": PASSWORD}).status_code == 302
    assert client.get(f"/registry/{approved[1].id}/modelcard.xml").status_code == 403
