"""Signed dossiers: emitted at every gate, verified offline by pyHanko and by poppler's pdfsig, and every
kind of tampering caught. Rendered pages are looked at as images."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image, ImageStat
from sqlmodel import select

from governance.db import get_db
from governance.dossier import keys as signing_keys
from governance.dossier.render import RefusingFetcher
from governance.dossier.verify import verify
from governance.models import Dossier
from governance.operations.dossiers import absolute_path, emit, pending

pytestmark = pytest.mark.both_databases
INJECTION = '<b>bold</b><img src="file:///etc/passwd"><script>alert(1)</script>'


@pytest.fixture
def app_overrides():
    return {"dossier_dispatch": "inline", "signing_passphrase": "test signing passphrase"}


@pytest.fixture
def approved(factory, institution, session):
    """A fast-track case approved through the workflow: its gates emitted two dossiers."""
    case = factory.submission()
    case.summary = INJECTION
    session.commit()
    factory.drive(case, "approved")
    return case


@pytest.fixture(scope="module")
def signed(tmp_path_factory, sqlite_template):
    """One approved case's signed dossiers, shared by the tests that only read the PDF files (database-independent:
    built once on SQLite): the instance's settings, the case, its dossier rows and the CLI runner."""
    from types import SimpleNamespace

    from .conftest import CliRunner, make_app
    from .factories import Factory

    folder = tmp_path_factory.mktemp("signed-dossiers")
    database = folder / "governance.sqlite3"
    shutil.copy(sqlite_template, database)
    (folder / "instance").mkdir()
    app = make_app(folder / "instance", f"sqlite:///{database}", dossier_dispatch="inline",
                   signing_passphrase="test signing passphrase")
    settings = app.config["GOVERNANCE"]
    signing_keys.init_keys(settings)
    session = get_db(app).session_factory()
    factory = Factory(app, session)
    case = factory.submission()
    case.summary = INJECTION
    session.commit()
    factory.drive(case, "approved")
    yield SimpleNamespace(app=app, settings=settings, case_id=case.id, dossiers=_dossiers(session, case),
                          runner=CliRunner(app))
    session.close()
    get_db(app).dispose()


def _dossiers(session, case, *, letters: bool = False) -> list[Dossier]:
    """The case's dossiers (and, with ``letters``, its decision letters, also stored as dossier rows)."""
    query = select(Dossier).where(Dossier.submission_id == case.id).order_by(Dossier.id)
    if not letters:
        query = query.where(Dossier.gate != "letter")
    return session.execute(query).scalars().all()


def _nss(tmp_path: Path, certificate: Path) -> str:
    database = tmp_path / "nss"
    database.mkdir()
    subprocess.run(["certutil", "-N", "-d", f"sql:{database}", "--empty-password"], check=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{database}", "-n", "institution", "-t", "CT,C,C", "-i",
                    str(certificate)], check=True)
    return f"sql:{database}"


def _pdfsig(path: Path, nssdir: str | None) -> str:
    command = ["pdfsig"] + (["-nssdir", nssdir] if nssdir else []) + [str(path)]
    # pdfsig exits 0 even on a digest mismatch: its output is what counts.
    return subprocess.run(command, capture_output=True, text=True).stdout


def test_every_gate_emits_a_signed_dossier(approved, session, institution):
    dossiers = _dossiers(session, approved, letters=True)
    assert [d.gate for d in dossiers] == ["audit", "decision", "letter"]  # the decision's letter follows its dossier
    assert pending(session) == []
    certificate = signing_keys.load_certificate(institution)
    for dossier in dossiers:
        path = absolute_path(institution, dossier)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == dossier.sha256
        assert dossier.signer_fingerprint == signing_keys.fingerprint(certificate)
        assert dossier.page_count >= (1 if dossier.gate == "letter" else 3)
        report = verify(path, [certificate], expected_sha256=dossier.sha256)
        assert report.ok, report.failures
        assert report.details["coverage"] == "ENTIRE_FILE" and report.details["trusted"]


def test_signing_and_verifying_work_where_the_thread_runs_an_event_loop(approved, session, institution):
    """pyHanko's sync API wraps asyncio.run; an async caller (or Playwright's sync API) must still sign."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from governance.dossier.signing import sign

    dossier = _dossiers(session, approved)[0]
    path = absolute_path(institution, dossier)
    certificate = signing_keys.load_certificate(institution)

    async def inside_a_loop():
        report = verify(path, [certificate], expected_sha256=dossier.sha256)
        signed = sign(_one_page_pdf(), (0, 50, 50, 250, 120), institution, reason="event-loop test")
        return report, signed

    # The loop runs on a thread of its own: this test's thread may already have one (Playwright's sync API).
    with ThreadPoolExecutor(max_workers=1) as caller:
        report, signed = caller.submit(asyncio.run, inside_a_loop()).result()
    assert report.ok, report.failures
    assert signed.startswith(b"%PDF") and b"/ByteRange" in signed


def _one_page_pdf() -> bytes:
    from weasyprint import HTML

    return HTML(string="<p>one page</p>").write_pdf()


def test_pdfsig_agrees_and_a_flipped_byte_fails_both(signed, tmp_path):
    institution, runner, dossier = signed.settings, signed.runner, signed.dossiers[-1]
    original = absolute_path(institution, dossier)
    certificate = tmp_path / "institution.pem"
    assert runner.invoke("keys", "export-cert", str(certificate)).exit_code == 0
    nssdir = _nss(tmp_path, certificate)
    output = _pdfsig(original, nssdir)
    assert "Signature is Valid." in output and "Certificate is Trusted." in output and "Total document signed" in output
    assert "ETSI.CAdES.detached" in output
    data = bytearray(original.read_bytes())
    position = data.index(b"stream", 2000) + 20  # inside the signed range, in a content stream
    data[position] ^= 0x01
    flipped = tmp_path / "flipped.pdf"
    flipped.write_bytes(bytes(data))
    assert "Digest Mismatch." in _pdfsig(flipped, nssdir)
    report = verify(flipped, [signing_keys.load_certificate(institution)], expected_sha256=dossier.sha256)
    assert not report.ok
    assert any("not intact" in f or "digest" in f.lower() for f in report.failures)
    assert any("differs from the stored record" in f for f in report.failures)
    result = runner.invoke("dossier", "verify", str(flipped))
    assert result.exit_code == 1


def test_an_appended_incremental_update_is_reported(signed, tmp_path):
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    institution = signed.settings
    source = absolute_path(institution, signed.dossiers[-1])
    writer = IncrementalPdfFileWriter(io.BytesIO(source.read_bytes()))
    writer.root["/Lang"] = generic.pdf_string("en")  # a harmless-looking change after signing
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    updated = tmp_path / "updated.pdf"
    updated.write_bytes(out.getvalue())
    report = verify(updated, [signing_keys.load_certificate(institution)])
    assert any("does not cover the whole file" in f and "appended after signing" in f for f in report.failures)


def test_a_different_trust_root_is_untrusted(signed, tmp_path):
    institution = signed.settings
    other = institution.replace(instance_path=tmp_path / "other-institution", signing_passphrase="another one")
    signing_keys.init_keys(other)
    path = absolute_path(institution, signed.dossiers[-1])
    report = verify(path, [signing_keys.load_certificate(other)])
    assert report.details["intact"] and any("untrusted" in f for f in report.failures)
    assert "Certificate issuer isn't Trusted." in _pdfsig(path, None)


def test_chinese_is_text_in_an_embedded_cjk_font_and_injection_is_literal(signed):
    path = absolute_path(signed.settings, signed.dossiers[-1])
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True).stdout
    assert "人工智能部署伦理审查档案" in text and "审查清单" in text
    flat = text.replace("\n", "")
    assert '<img src="file:///etc/passwd">' in flat and "<script>alert(1)</script>" in flat
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True).stdout
    cjk = [line for line in fonts.splitlines() if "Noto-Sans-CJK-SC" in line]
    assert cjk and all(" yes yes " in line for line in cjk)  # embedded, subset
    for needle in ("Page 1 of", "Submission #" + str(signed.case_id)):
        assert needle in text


def test_the_url_fetcher_reads_nothing_outside_the_report_assets(tmp_path):
    fetcher = RefusingFetcher(Path(__file__).resolve().parent.parent / "reports")
    for url in ("file:///etc/passwd", "http://example.org/x.png", "https://127.0.0.1/", "ftp://x/y"):
        with pytest.raises(ValueError):
            fetcher.fetch(url)
    assert len(fetcher.refused) == 4
    css = (Path(__file__).resolve().parent.parent / "reports" / "dossier.css").as_uri()
    assert fetcher.fetch(css) is not None


def test_printed_hashes_match_the_attachments(signed):
    path = absolute_path(signed.settings, signed.dossiers[-1])
    report = verify(path, [signing_keys.load_certificate(signed.settings)])
    manifest = report.details["manifest"]["attachments"]
    assert set(manifest) == {"audit-results.json", "classification.json", "event-log.json"}
    text = subprocess.run(["pdftotext", "-raw", str(path), "-"], capture_output=True, text=True).stdout.replace("\n", "")
    for digest in manifest.values():
        assert digest in text


def test_a_manifest_that_disagrees_with_an_attachment_fails(factory, institution, session, monkeypatch):
    """A renderer bug that embeds other bytes than it printed is caught by the verifier."""
    from governance.dossier import render as rendering

    real = rendering._embed

    def swapped(pdf, attachments, moment):
        return real(pdf, {**attachments, "classification.json": b'{"tampered": true}'}, moment)

    case = factory.case_in("in_review")
    monkeypatch.setattr(rendering, "_embed", swapped)
    dossier = emit(session, institution, case, "audit")
    session.commit()
    report = verify(absolute_path(institution, dossier), [signing_keys.load_certificate(institution)])
    assert any("classification.json does not match its printed sha256" in f for f in report.failures)


def test_dossiers_are_never_overwritten(approved, session, institution, app, runner):
    before = _dossiers(session, approved)
    result = runner.invoke("dossier", "emit", str(approved.id), "--gate", "decision")
    assert result.exit_code == 0, result.output
    after = _dossiers(session, approved)
    assert len(after) == len(before) + 1 and after[-1].path != before[-1].path
    assert all(absolute_path(institution, d).exists() for d in after)
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        with get_db(app).engine.begin() as connection:
            connection.execute(sa.text("UPDATE dossier SET sha256 = 'x' WHERE id = :i"), {"i": before[0].id})
    listed = runner.invoke("dossier", "list", "--submission", str(approved.id), "--json")
    assert listed.exit_code == 0
    assert len(__import__("json").loads(listed.output)) == len(_dossiers(session, approved, letters=True))


def test_pages_render_as_images(signed, tmp_path):
    path = absolute_path(signed.settings, signed.dossiers[-1])
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(path), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == signed.dossiers[-1].page_count
    for page in pages:
        stats = ImageStat.Stat(Image.open(page).convert("L"))
        assert stats.stddev[0] > 5  # not blank


def test_wrong_passphrase_says_so(institution):

    from governance.dossier.signing import load_signer

    with pytest.raises(signing_keys.SigningKeyError, match="wrong passphrase"):
        load_signer(institution.replace(signing_passphrase="not the passphrase"))


def test_pending_gate_events_are_emitted_later(factory, session, institution, app, runner):

    app.config["GOVERNANCE"] = institution.replace(dossier_dispatch="queue")
    case = factory.case_in("in_review")
    assert [(s, g) for s, _seq, g in pending(session)] == [(case.id, "audit")]
    result = runner.invoke("dossier", "pending", "--emit")
    assert result.exit_code == 0 and "audit" in result.output
    assert pending(session) == []
    assert re.search(r"dossier \d+: submission", result.output)
    shutil.rmtree(institution.instance_path / "dossiers", ignore_errors=True)


def test_the_continuing_review_dossier_shows_the_accuracy_trend_and_the_incidents(factory, institution, session,
                                                                                   approved, app):
    """The continuing-review gate looks back: the trend of every audit and re-audit, and the incidents."""
    from datetime import timedelta

    from governance.db import get_db
    from governance.models import Deployment, ModelVersion
    from governance.scheduler import tick
    from governance.operations.incidents import report_incident

    deployment = session.get(Deployment, approved.deployment_id)
    tick(get_db(app).engine, institution, deployment.next_reaudit_at + timedelta(hours=1))  # one re-audit
    report_incident(session, institution, deployment=deployment, severity="minor", reporter=factory.person("clinician"),
                    what_happened="Formatting glitch in a discharge letter.")
    session.commit()
    continuing = factory.submission(kind="continuing", deployment=deployment,
                                    version=session.get(ModelVersion, deployment.approved_version_id))
    factory.drive(continuing, "approved")
    (dossier,) = [d for d in _dossiers(session, continuing) if d.gate == "continuing_review"]
    path = absolute_path(institution, dossier)
    assert verify(path, [signing_keys.load_certificate(institution)], expected_sha256=dossier.sha256).ok
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True).stdout
    assert "Continuing review" in text and "Accuracy over time" in text and "批准以来的监测" in text
    assert "reaudit" in text and "Formatting glitch in a discharge letter." in text
    assert "overall" in text  # the chart's legend: the SVG was drawn into the page


def test_the_audit_chart_draws_each_bar_to_its_accuracy_in_its_domain_colour():
    import base64

    from governance.dossier import charts

    dimensions = [{"code": "privacy_confidentiality", "accuracy": 0.5, "ci95": [0.4, 0.6]},
                  {"code": "medication_safety", "accuracy": 0.9, "ci95": [0.8, 0.95]},
                  {"code": "informed_consent", "accuracy": 0.0, "ci95": [0.0, 0.1]}]
    png = charts.accuracy_chart_png(dimensions)
    assert png == charts.accuracy_chart_png(dimensions)  # the same data, the same bytes
    image = Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB")
    assert image.size == (charts.WIDTH, charts.HEIGHT)
    base, height = charts.HEIGHT - charts.BOTTOM, charts.HEIGHT - charts.TOP - charts.BOTTOM
    slot = (charts.WIDTH - charts.LEFT - charts.RIGHT) / 3

    def pixel(index: int, value: float) -> tuple[int, int, int]:
        return image.getpixel((round(charts.LEFT + slot * index + slot * 0.3), round(base - value * height)))

    assert pixel(0, 0.45) == charts.ETHICS_COLOUR and pixel(0, 0.55) == (255, 255, 255)
    assert pixel(1, 0.85) == charts.SAFETY_COLOUR and pixel(1, 0.92) != charts.SAFETY_COLOUR
    assert pixel(2, 0.05) == (255, 255, 255)  # no bar for zero


def test_the_appendix_samples_failures_from_every_dimension_safety_first():
    from governance.dossier.context import failing_sample

    rows = [{"item_id": f"{d}-{k}", "dimension": d} for d in ("informed_consent", "medication_safety", "zzz_local")
            for k in range(5)]
    chosen = [r["item_id"] for r in failing_sample(rows, 7)]
    assert chosen == ["medication_safety-0", "informed_consent-0", "zzz_local-0", "medication_safety-1",
                      "informed_consent-1", "zzz_local-1", "medication_safety-2"]
    assert len(failing_sample(rows, 100)) == 15
