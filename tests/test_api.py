"""The REST API: token authentication and scopes, roles (403) and privacy (404), JSON errors, and the whole
path a CI pipeline takes: create a deployment, submit a version, follow it, fire events, fetch dossiers."""

from __future__ import annotations

import hashlib

import pytest
from sqlmodel import select

from governance.models import ApiToken
from governance.operations.tokens import create_token, revoke_token

from .factories import PASSWORD

pytestmark = pytest.mark.both_databases


@pytest.fixture
def token_for(factory, session):
    def make(user, scope: str = "submit") -> dict[str, str]:
        _token, secret = create_token(session, user, name="ci", scope=scope, actor=user)
        session.commit()
        return {"Authorization": f"Bearer {secret}"}
    return make


def version_payload(label: str = "v1", **extra) -> dict:
    return {"version_label": label, "base_model": "Qwen2.5-7B-Instruct",
            "weights_digest": hashlib.sha256(label.encode()).hexdigest(), "endpoint": "demo://good", **extra}


def test_requests_without_a_valid_token_get_401(client, factory, token_for, session):
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer nonsense"}).json["status"] == 401
    headers = token_for(factory.person("submitter"))
    assert client.get("/api/v1/me", headers=headers).json["email"] == "submitter@test.hospital"
    token = session.exec(select(ApiToken)).one()
    assert len(token.token_sha256) == 64 and headers["Authorization"].split()[1] not in token.token_sha256
    revoke_token(session, token, actor=factory.person("submitter"))
    session.commit()
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_openapi_document_is_public(client):
    document = client.get("/api/v1/openapi.json").json
    assert document["openapi"].startswith("3.") and "/api/v1/submissions" in document["paths"]


def test_ci_path_create_submit_follow_and_fetch_the_dossier(client, factory, token_for, app):

    from governance.dossier.keys import init_keys

    settings = app.config["GOVERNANCE"].replace(dossier_dispatch="inline", signing_passphrase="api tests")
    app.config["GOVERNANCE"] = settings
    init_keys(settings)
    headers = token_for(factory.person("submitter"))
    created = client.post("/api/v1/deployments", headers=headers,
                          json={"descriptor": factory.descriptor("administrative_assistant", name="API assistant")})
    assert created.status_code == 201, created.json
    deployment_id = created.json["id"]
    submitted = client.post("/api/v1/submissions", headers=headers, json={
        "deployment_id": deployment_id, "kind": "initial", "model_version": version_payload()})
    assert submitted.status_code == 201, submitted.json
    case = submitted.json
    assert case["state"] == "submitted" and case["model_version"]["weights_digest"] == version_payload()["weights_digest"]
    chair = token_for(factory.person("chair"))
    for event in ("start_screening", "accept", "confirm_classification"):
        reply = client.post(f"/api/v1/submissions/{case['id']}/events", headers=chair, json={"event": event})
        assert reply.status_code == 200, reply.json
    status = client.get(f"/api/v1/submissions/{case['id']}", headers=headers).json
    assert status["state"] == "in_review" and status["audit"]["verdict"] == "pass" and status["audit"]["percent"] == 100
    dossiers = client.get(f"/api/v1/submissions/{case['id']}/dossiers", headers=headers).json
    assert [d["gate"] for d in dossiers] == ["audit"]
    with client.get(dossiers[0]["pdf"], headers=headers) as pdf:
        assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
        assert hashlib.sha256(pdf.data).hexdigest() == dossiers[0]["sha256"]


def test_guard_refusals_are_409_with_the_reason_and_roles_are_403(client, factory, token_for):
    case = factory.case_in("in_review")
    chair = token_for(factory.person("chair"))
    reply = client.post(f"/api/v1/submissions/{case.id}/events", headers=chair, json={"event": "approve"})
    assert reply.status_code == 409 and reply.json["guard"] == "decision_supported_by_votes"
    submitter = token_for(factory.person("submitter"))
    reply = client.post(f"/api/v1/submissions/{case.id}/events", headers=submitter, json={"event": "approve"})
    assert reply.status_code == 403 and reply.json["guard"] == "roles"
    reply = client.post(f"/api/v1/submissions/{case.id}/events", headers=chair,
                        json={"event": "assign_reviewer", "data": {"reviewer": "nobody@x.org"}})
    assert reply.status_code == 409 and "no active user" in reply.json["error"]
    reply = client.post(f"/api/v1/submissions/{case.id}/events", headers=chair, json={"event": "teleport"})
    assert reply.status_code == 409 and reply.json["guard"] == "declared"


def test_read_only_tokens_cannot_write(client, factory, token_for):
    headers = token_for(factory.person("submitter"), scope="read")
    reply = client.post("/api/v1/deployments", headers=headers,
                        json={"descriptor": factory.descriptor("administrative_assistant")})
    assert reply.status_code == 403 and "read-only" in reply.json["error"]


def test_other_peoples_private_cases_are_404(client, factory, token_for):
    case = factory.case_in("submitted")
    other = token_for(factory.user("submitter"))
    assert client.get(f"/api/v1/submissions/{case.id}", headers=other).status_code == 404
    assert client.get(f"/api/v1/deployments/{case.deployment_id}", headers=other).status_code == 404
    assert client.get(f"/api/v1/submissions/{case.id}", headers=token_for(factory.person("compliance"))).status_code == 200


def test_the_registry_is_for_compliance(client, factory, token_for):
    factory.case_in("approved")
    assert client.get("/api/v1/registry", headers=token_for(factory.person("submitter"))).status_code == 403
    reply = client.get("/api/v1/registry?status=active", headers=token_for(factory.person("compliance")))
    assert reply.status_code == 200 and [d["status"] for d in reply.json["deployments"]] == ["active"]


@pytest.mark.parametrize(("body", "message"), [
    ({"deployment_id": 1, "kind": "initial"}, "model_version: Field required"),
    ({"deployment_id": 1, "kind": "initial", "model_version": version_payload(weights_digest="zz")},
     "model_version.weights_digest"),
    ({"deployment_id": 1, "kind": "initial", "model_version": version_payload(), "colour": "red"},
     "colour: unknown field"),
])
def test_malformed_bodies_say_what_is_wrong(client, factory, token_for, body, message):
    factory.deployment()
    reply = client.post("/api/v1/submissions", headers=token_for(factory.person("submitter")), json=body)
    assert reply.status_code == 400 and message in reply.json["error"]


def test_a_change_is_routed_by_materiality(client, factory, token_for):
    approved = factory.case_in("approved")
    headers = token_for(factory.person("submitter"))
    reply = client.post("/api/v1/submissions", headers=headers, json={
        "deployment_id": approved.deployment_id, "kind": "change",
        "model_version": version_payload("v2", base_model="DeepSeek-R1-Distill-Qwen-32B",
                                         change_summary="New base model.")})
    assert reply.status_code == 201
    chair = token_for(factory.person("chair"))
    for event in ("start_screening", "accept"):
        client.post(f"/api/v1/submissions/{reply.json['id']}/events", headers=chair, json={"event": event})
    status = client.get(f"/api/v1/submissions/{reply.json['id']}", headers=headers).json
    assert status["materiality"] == "material"


def test_votes_through_the_api_need_the_password(client, factory, token_for):
    case = factory.case_in("in_review")
    reviewer = factory.person("ai1")
    factory.fire(case, "assign_reviewer", factory.person("chair"), reviewer=reviewer.email)
    factory.prepare_reviewer(case, reviewer)
    headers = token_for(reviewer)
    reply = client.post(f"/api/v1/submissions/{case.id}/events", headers=headers,
                        json={"event": "vote", "data": {"meaning": "approve", "password": "wrong"}})
    assert reply.status_code == 409 and reply.json["guard"] == "signature_password_valid"
    reply = client.post(f"/api/v1/submissions/{case.id}/events", headers=headers,
                        json={"event": "vote", "data": {"meaning": "approve", "password": PASSWORD}})
    assert reply.status_code == 200 and reply.json["event"]["name"] == "vote"


def test_unknown_paths_and_methods_under_the_api_get_json_errors(client):
    for path in ("/api/v1/nowhere", "/api/v1/submissions/abc", "/api/v1/submissions/9223372036854775808"):
        reply = client.get(path)
        assert reply.status_code == 404 and reply.is_json and reply.json["error"], path
    reply = client.delete("/api/v1/me")
    assert reply.status_code == 405 and reply.is_json and "GET" in reply.headers["Allow"]
    assert not client.get("/no-such-page").is_json  # the pages keep their HTML errors


def test_inputs_the_database_cannot_hold_are_400_not_500(client, factory, token_for):
    """Found by schemathesis (tests/test_api_schema.py): ids beyond 32 bits and NUL characters crashed the
    request (OverflowError on SQLite; integer out of range and NUL in text on PostgreSQL)."""
    chair = token_for(factory.person("chair"))
    assert client.get(f"/api/v1/deployments/{2**63}", headers=chair).status_code == 404
    reply = client.get("/api/v1/registry?page=184467440737095518", headers=chair)
    assert reply.status_code == 400 and reply.json["field"] == "page"
    assert client.get("/api/v1/registry?per_page=many", headers=chair).status_code == 400
    assert client.get("/api/v1/registry?status=gone", headers=chair).status_code == 400
    descriptor = factory.descriptor("administrative_assistant", name="null\x00byte")
    reply = client.post("/api/v1/deployments", headers=chair, json={"descriptor": descriptor})
    assert reply.status_code == 400 and "NUL" in reply.json["error"]
    case = factory.case_in("in_review", example="emr_generation")
    reply = client.post(f"/api/v1/submissions/{case.id}/events", headers=chair,
                        json={"event": "schedule_meeting", "data": {"meeting": 2**70}})
    assert reply.status_code == 400 and reply.json["guard"] == "fields" and "out of range" in reply.json["error"]
    reply = client.post("/api/v1/submissions", headers=token_for(factory.person("submitter")), json={
        "deployment_id": 2**40, "kind": "initial", "model_version": version_payload()})
    assert reply.status_code == 400 and reply.json["field"] == "deployment_id"


def test_the_default_title_of_a_case_fits_its_column(client, factory, token_for):
    """A 200-character deployment name and a 100-character version label made a 301-character title, which
    PostgreSQL refused (500)."""
    headers = token_for(factory.person("submitter"))
    created = client.post("/api/v1/deployments", headers=headers,
                          json={"descriptor": factory.descriptor("administrative_assistant", name="n" * 200)})
    assert created.status_code == 201, created.json
    reply = client.post("/api/v1/submissions", headers=headers, json={
        "deployment_id": created.json["id"], "kind": "initial", "model_version": version_payload("v" * 100)})
    assert reply.status_code == 201 and len(reply.json["title"]) == 300


def test_one_schema_strips_a_label_before_its_limits_and_its_duplicate_check(client, factory, token_for):
    """`version_label=" v1.0"` reached the database unstripped and answered 500 (the API model and the operation
    disagreed); the one schema strips it first, and the duplicate is refused with its reason."""
    owner = factory.person("submitter")
    deployment = factory.deployment(owner=owner)
    headers = token_for(owner)
    first = client.post("/api/v1/submissions", headers=headers, json={
        "deployment_id": deployment.id, "kind": "initial", "model_version": version_payload("v1.0")})
    assert first.status_code == 201, first.json
    again = client.post("/api/v1/submissions", headers=headers, json={
        "deployment_id": deployment.id, "kind": "initial", "model_version": version_payload(" v1.0")})
    assert again.status_code == 400 and "already has a version 'v1.0'" in again.json["error"]
    too_long = client.post("/api/v1/submissions", headers=headers, json={
        "deployment_id": deployment.id, "kind": "initial", "model_version": version_payload("v" * 101)})
    assert too_long.status_code == 400 and too_long.json["field"] == "model_version.version_label"


def test_a_submitter_who_does_not_own_the_deployment_is_refused_by_the_operation(client, factory, token_for):
    deployment = factory.deployment(owner=factory.person("submitter"))
    other = factory.user("submitter")
    refused = client.post("/api/v1/submissions", headers=token_for(other), json={
        "deployment_id": deployment.id, "kind": "initial", "model_version": version_payload()})
    assert refused.status_code in {403, 404}
