"""Documents as evidence: the type judged from the content (and a name that contradicts it refused), a size limit,
versions that never overwrite, who may attach, the upload and download pages with CSRF, the S3 store against a
real local server (moto's), and a document uploaded to a case in its next dossier with its sha256."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import zipfile

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from governance.db import get_db
from governance.documents.detect import DOCX, JPEG, PDF, PNG, TEXT, XLSX, DocumentRefused, detect
from governance.documents.storage import ObjectStore, StoredDocumentCorrupt
from governance.errors import NotPermitted
from governance.models import Document, Event
from governance.operations.documents import attach_document, document_bytes, documents_of, subject_of

from .factories import PASSWORD
from .support.pdfs import one_page_pdf

MAX = 64 * 1024


def _image(fmt: str) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(out, format=fmt)
    return out.getvalue()


def _docx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml",
                         '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
                         'content-types"><Override PartName="/word/document.xml" ContentType="application/'
                         'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')
        archive.writestr("word/document.xml", "<w:document/>")
    return out.getvalue()


def _xlsx() -> bytes:
    from openpyxl import Workbook

    out = io.BytesIO()
    workbook = Workbook()
    workbook.active["A1"] = "sensitivity"
    workbook.save(out)
    return out.getvalue()


def _plain_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "not an office document")
    return out.getvalue()


ACCEPTED = [("validation.pdf", one_page_pdf, PDF), ("chart.png", lambda: _image("PNG"), PNG),
            ("photo.jpg", lambda: _image("JPEG"), JPEG), ("photo.JPEG", lambda: _image("JPEG"), JPEG),
            ("report.docx", _docx, DOCX), ("metrics.xlsx", _xlsx, XLSX),
            ("notes.txt", lambda: "验证说明 validation notes\n".encode(), TEXT)]
REFUSED = [
    ("setup.exe renamed", "report.pdf", lambda: b"MZ\x90\x00\x03\x00\x00\x00" + bytes(range(256)) * 4,
     "the content is not one of the accepted types"),
    ("a PDF named .docx", "report.docx", one_page_pdf, "the name ends in '.docx' but the content is application/pdf"),
    ("a PNG named .pdf", "scan.pdf", lambda: _image("PNG"), "the name ends in '.pdf' but the content is image/png"),
    ("a zip that is no office document", "report.docx", _plain_zip, "not one of the accepted types"),
    ("text named .html", "page.html", lambda: b"<script>alert(1)</script>", "the name ends in '.html'"),
    ("empty", "empty.pdf", lambda: b"", "the file is empty"),
    ("too large", "big.txt", lambda: b"a" * (MAX + 1), f"at most {MAX:,} are accepted"),
]


@pytest.mark.parametrize(("filename", "make", "kind"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_each_accepted_type_is_known_by_its_content(filename, make, kind):
    assert detect(filename, make(), MAX) == kind


@pytest.mark.parametrize(("case", "filename", "make", "reason"), REFUSED, ids=[r[0] for r in REFUSED])
def test_a_file_that_is_not_what_it_says_is_refused_naming_it(case, filename, make, reason):
    with pytest.raises(DocumentRefused) as refused:
        detect(filename, make(), MAX)
    assert str(refused.value).startswith(f"{filename}: ") and reason in str(refused.value)


def test_a_zip_bomb_is_never_inflated():
    """Only the central directory and the small [Content_Types].xml are read: a huge member is not inflated."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", b"x" * (300 * 1024))  # larger than the manifest may be
        archive.writestr("word/document.xml", b"\0" * (50 * 1024 * 1024))
    data = out.getvalue()
    assert len(data) < 1024 * 1024
    with pytest.raises(DocumentRefused, match="not one of the accepted types"):
        detect("bomb.docx", data, 10 * 1024 * 1024)


@pytest.fixture
def case(factory):
    return factory.submission()


@pytest.mark.both_databases
def test_a_second_upload_is_version_two_and_the_first_is_unchanged(app, session, factory, case):
    settings = factory.settings
    submitter = factory.person("submitter")
    first = attach_document(session, settings, case, doc_type="bias_report", filename="bias.txt",
                            data=b"first findings\n", actor=submitter, note="first pass")
    session.commit()
    second = attach_document(session, settings, case, doc_type="bias_report", filename="bias.txt",
                             data=b"second findings\n", actor=submitter)
    other = attach_document(session, settings, case, doc_type="other", filename="bias.txt", data=b"first findings\n",
                            actor=submitter)
    session.commit()
    assert (first.version, second.version, other.version) == (1, 2, 1)
    session.expire_all()
    kept = session.get(Document, first.id)
    assert kept.sha256 == hashlib.sha256(b"first findings\n").hexdigest() and kept.note == "first pass"
    assert document_bytes(settings, kept) == b"first findings\n"
    assert document_bytes(settings, session.get(Document, second.id)) == b"second findings\n"
    assert kept.storage_key == session.get(Document, other.id).storage_key  # the same bytes are stored once
    listed = documents_of(session, subject_of(session, case))
    assert [d.version for d in listed if d.doc_type == "bias_report"] == [1, 2]
    events = session.execute(select(Event).where(Event.name == "document_attached").order_by(Event.seq)).scalars().all()
    assert [e.payload["version"] for e in events] == [1, 2, 1] and events[1].submission_id == case.id
    assert events[1].payload["sha256"] == second.sha256 and events[1].payload["doc_type"] == "bias_report"
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        with get_db(app).engine.begin() as connection:
            connection.execute(sa.text("UPDATE document SET sha256 = :s WHERE id = :i"), {"s": "0" * 64, "i": first.id})
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        with get_db(app).engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM document WHERE id = :i"), {"i": first.id})


def test_a_changed_file_is_an_error_not_evidence(session, factory, case):
    document = attach_document(session, factory.settings, case, doc_type="other", filename="n.txt", data=b"true\n",
                               actor=factory.person("submitter"))
    session.commit()
    path = factory.settings.instance_path / "documents" / document.storage_key
    path.chmod(0o600)
    path.write_bytes(b"false\n")
    with pytest.raises(StoredDocumentCorrupt):
        document_bytes(factory.settings, document)


def test_who_may_attach(session, factory, case):
    settings = factory.settings
    stranger = factory.user("submitter")
    with pytest.raises(NotPermitted):
        attach_document(session, settings, case, doc_type="other", filename="x.txt", data=b"x", actor=stranger)
    with pytest.raises(NotPermitted):  # a clinician with no incident of this deployment
        attach_document(session, settings, case, doc_type="other", filename="x.txt", data=b"x",
                        actor=factory.person("clinician"))
    with pytest.raises(DocumentRefused, match="ends in '.exe'"):
        attach_document(session, settings, case, doc_type="other", filename="x.exe", data=b"x",
                        actor=factory.person("submitter"))
    from governance.errors import GovernanceError

    with pytest.raises(GovernanceError, match="unknown document type"):
        attach_document(session, settings, case, doc_type="horoscope", filename="x.txt", data=b"x",
                        actor=factory.person("submitter"))
    for person in ("submitter", "chair", "compliance"):
        attach_document(session, settings, case, doc_type="other", filename=f"{person}.txt", data=b"ok",
                        actor=factory.person(person))
    deployment = subject_of(session, case).deployment
    attach_document(session, settings, deployment, doc_type="dpia", filename="dpia.txt", data=b"assessed",
                    actor=factory.person("submitter"))
    session.commit()
    assert session.execute(select(sa.func.count(Document.id))).scalar() == 4


# --- the pages --------------------------------------------------------------------------------------------------

def _token(page: bytes) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.decode()).group(1)


def _login(client, user) -> None:
    token = _token(client.get("/login").data)
    response = client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.data[:300]


def test_upload_on_the_case_page_and_download(app, session, factory, case):
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    _login(client, factory.person("submitter"))
    page = client.get(f"/submissions/{case.id}")
    assert page.status_code == 200 and b'enctype="multipart/form-data"' in page.data
    assert b"Bias and fairness evaluation" in page.data and b"missing" in page.data  # required for a new case
    data = one_page_pdf()
    upload = f"/submissions/{case.id}/documents"
    refused = client.post(upload, data={"doc_type": "bias_report", "file": (io.BytesIO(data), "bias.pdf")},
                          content_type="multipart/form-data")
    assert refused.status_code == 400  # no CSRF token
    response = client.post(upload, data={"csrf_token": _token(page.data), "doc_type": "bias_report", "note": "v1",
                                         "file": (io.BytesIO(data), "bias.pdf")},
                           content_type="multipart/form-data", follow_redirects=True)
    assert response.status_code == 200 and b"bias.pdf" in response.data
    document = session.execute(select(Document)).scalars().one()
    digest = hashlib.sha256(data).hexdigest()
    assert document.sha256 == digest and document.submission_id == case.id and document.media_type == "application/pdf"
    assert f'title="{digest}"'.encode() in response.data and digest[:12].encode() in response.data
    # a file whose name contradicts its content is refused with a message naming it
    wrong = client.post(upload, data={"csrf_token": _token(page.data), "doc_type": "other",
                                      "file": (io.BytesIO(data), "minutes.docx")},
                        content_type="multipart/form-data", follow_redirects=True)
    assert b"minutes.docx" in wrong.data and b"application/pdf" in wrong.data
    download = client.get(f"/documents/{document.id}")
    assert download.status_code == 200 and download.data == data
    assert download.headers["Content-Type"] == "application/pdf"
    assert download.headers["Content-Disposition"].startswith("attachment;") and "bias.pdf" in \
        download.headers["Content-Disposition"]
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    # someone who cannot see the case cannot download its documents
    other = app.test_client()
    _login(other, factory.user("submitter"))
    assert other.get(f"/documents/{document.id}").status_code == 404


def test_upload_on_the_deployment_page(app, session, factory, case):
    client = app.test_client()
    client.post("/login", data={"email": factory.person("submitter").email, "password": PASSWORD})
    deployment = subject_of(session, case).deployment
    response = client.post(f"/deployments/{deployment.id}/documents",
                           data={"subject": f"deployment:{deployment.id}", "doc_type": "dpia",
                                 "file": (io.BytesIO(b"impact assessed\n"), "dpia.txt")},
                           content_type="multipart/form-data", follow_redirects=True)
    assert response.status_code == 200 and b"dpia.txt" in response.data
    document = session.execute(select(Document)).scalars().one()
    assert (document.subject_type, document.subject_id, document.submission_id) == ("deployment", deployment.id, None)
    page = client.get(f"/submissions/{case.id}")
    assert b"dpia.txt" in page.data  # a deployment's documents are shown with its cases
    chinese = client.get(f"/submissions/{case.id}", headers={"Accept-Language": "zh-CN"}).data.decode()
    assert "证明文件" in chinese and "模型偏倚与公平性评估报告" in chinese and "缺失" in chinese


def test_an_upload_larger_than_the_limit_is_refused(app, session, factory, case):
    app.config["GOVERNANCE"] = factory.settings.replace(document_max_bytes=2048)
    client = app.test_client()
    client.post("/login", data={"email": factory.person("submitter").email, "password": PASSWORD})
    response = client.post(f"/submissions/{case.id}/documents",
                           data={"doc_type": "other", "file": (io.BytesIO(b"a" * 4096), "big.txt")},
                           content_type="multipart/form-data", follow_redirects=True)
    assert b"big.txt" in response.data and b"at most 2,048" in response.data
    assert session.execute(select(Document)).scalars().first() is None


# --- the command line -------------------------------------------------------------------------------------------

def test_govern_document_attach_and_list(runner, session, factory, case, tmp_path):
    path = tmp_path / "validation.txt"
    path.write_text("sensitivity 0.91\n", encoding="utf-8")
    submitter = factory.person("submitter").email
    result = runner.invoke("document", "attach", "--case", str(case.id), "--type", "validation_report",
                           "--as", submitter, str(path))
    assert result.exit_code == 0, result.output
    again = runner.invoke("document", "attach", "--case", str(case.id), "--type", "validation_report",
                          "--as", submitter, str(path))
    assert again.exit_code == 0 and "version 2" in again.output
    listed = runner.invoke("document", "list", "--case", str(case.id), "--json")
    assert listed.exit_code == 0, listed.output
    rows = __import__("json").loads(listed.output)
    assert [r["version"] for r in rows] == [1, 2]
    assert rows[0]["sha256"] == hashlib.sha256(b"sensitivity 0.91\n").hexdigest()
    refused = runner.invoke("document", "attach", "--case", str(case.id), "--type", "other", "--as", submitter,
                            str(tmp_path / "missing.pdf"))
    assert refused.exit_code != 0


# --- the object store -------------------------------------------------------------------------------------------

@pytest.fixture
def object_store():
    """moto's S3 server, listening on a loopback port of its own for this test."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_documents_in_an_s3_compatible_store(app, session, factory, case, object_store):
    import boto3

    settings = factory.settings.replace(document_storage="s3", document_s3_endpoint_url=object_store,
                                        document_s3_bucket="irb-evidence", document_s3_access_key_id="test",
                                        document_s3_secret_access_key="test")
    boto3.client("s3", endpoint_url=object_store, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket="irb-evidence")
    data = one_page_pdf()
    document = attach_document(session, settings, case, doc_type="validation_report", filename="validation.pdf",
                               data=data, actor=factory.person("submitter"))
    session.commit()
    assert document.storage == "s3" and document.storage_key == f"documents/{document.sha256[:2]}/{document.sha256}"
    assert not (settings.instance_path / "documents").exists()
    store = ObjectStore(settings)
    head = store.client.head_object(Bucket="irb-evidence", Key=document.storage_key)
    assert head["ContentType"] == "application/pdf" and head["Metadata"]["sha256"] == document.sha256
    assert document_bytes(settings, document) == data
    # the same bytes again: stored once; other bytes changed in the store are caught when read back
    again = attach_document(session, settings, case, doc_type="validation_report", filename="validation.pdf",
                            data=data, actor=factory.person("submitter"))
    assert again.version == 2 and again.storage_key == document.storage_key
    store.client.put_object(Bucket="irb-evidence", Key=document.storage_key, Body=b"%PDF-1.7 forged")
    with pytest.raises(StoredDocumentCorrupt):
        document_bytes(settings, document)


def test_an_object_store_needs_a_bucket(factory):
    from governance.errors import ConfigError

    with pytest.raises(ConfigError, match="document_s3_bucket"):
        factory.settings.replace(document_storage="s3")


# --- the dossier ------------------------------------------------------------------------------------------------

@pytest.fixture
def app_overrides():
    return {"dossier_dispatch": "inline", "signing_passphrase": "test signing passphrase"}


@pytest.mark.both_databases
def test_a_document_uploaded_to_a_case_appears_with_its_sha256_in_the_next_dossier(app, session, factory, case):
    """The issue's done-when: upload to a case, and the next dossier lists it with its sha256 and embeds the PDF."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    from governance.dossier import keys as signing_keys
    from governance.dossier.verify import verify
    from governance.models import Dossier
    from governance.operations.dossiers import absolute_path

    settings = factory.settings
    signing_keys.init_keys(settings)
    data = one_page_pdf()
    document = attach_document(session, settings, case, doc_type="bias_report", filename="bias-evaluation.pdf",
                               data=data, actor=factory.person("submitter"))
    notes = attach_document(session, settings, subject_of(session, case).deployment, doc_type="other",
                            filename="notes.txt", data=b"site visit notes\n", actor=factory.person("chair"))
    session.commit()
    factory.drive(case, "in_review")  # the audit gate emits the next dossier
    dossier = session.execute(select(Dossier).where(Dossier.submission_id == case.id)).scalars().one()
    path = absolute_path(settings, dossier)
    report = verify(path, [signing_keys.load_certificate(settings)], expected_sha256=dossier.sha256)
    assert report.ok, report.failures
    embedded = f"documents/{document.id}-bias-evaluation.pdf"
    assert report.details["manifest"]["attachments"][embedded] == document.sha256
    with path.open("rb") as handle:
        from governance.dossier.verify import _embedded_files

        assert _embedded_files(PdfFileReader(handle))[embedded] == data
    text = subprocess.run(["pdftotext", "-raw", str(path), "-"], capture_output=True, text=True).stdout
    flat = text.replace("\n", "")
    assert "Documents" in text and "证明文件" in text and "bias-evaluation.pdf" in text and "notes.txt" in text
    assert document.sha256 in flat and notes.sha256 in flat
    assert "Bias and fairness evaluation of the model" in text


def test_the_required_documents_file_is_checked_like_the_checklists(tmp_path):
    """A condition naming an unknown field is refused at load time with the file, the line and the key."""
    import shutil

    from governance.cli.classify import validate_data_files
    from governance.datafiles import DataFileError
    from governance.documents.required import REQUIRED_DOCUMENTS_FILE

    from .conftest import ROOT

    folder = tmp_path / "checklists"
    shutil.copytree(ROOT / "checklists", folder)
    path = folder / REQUIRED_DOCUMENTS_FILE
    path.write_text(path.read_text(encoding="utf-8").replace("field: personal_information", "field: star_sign"),
                    encoding="utf-8")
    with pytest.raises(DataFileError, match="star_sign") as refused:
        validate_data_files(ROOT / "regulations", folder)
    assert "required_documents.yaml" in str(refused.value) and "documents[1].applies_when" in str(refused.value)


def test_what_a_case_must_carry_follows_its_kind_and_facts(session, factory):
    """Every new case needs a bias evaluation; a device a validation report; sensitive data a DPIA."""
    from governance import queries

    plain = factory.submission()
    required = [r.type.id for r in queries.required_documents(session, factory.settings, plain)]
    assert "bias_report" in required and "validation_report" not in required
    sensitive = factory.submission(personal_information="sensitive")
    assert "dpia" in [r.type.id for r in queries.required_documents(session, factory.settings, sensitive)]
    attach_document(session, factory.settings, sensitive, doc_type="dpia", filename="dpia.txt", data=b"done",
                    actor=factory.person("submitter"))
    session.commit()
    status = {r.type.id: r.present for r in queries.required_documents(session, factory.settings, sensitive)}
    assert status["dpia"] is True and status["bias_report"] is False
    device = factory.drive(factory.submission("diagnostic_decision_support_images"), "classified")
    assert queries.case_facts(session, device)["nmpa_status"] == "device"
    assert "validation_report" in [r.type.id for r in queries.required_documents(session, factory.settings, device)]


def test_the_reporter_attaches_a_screenshot_to_an_incident(app, session, factory):
    from governance.operations.incidents import report_incident

    app.config["GOVERNANCE"] = factory.settings.replace(dossier_dispatch="queue")  # no dossier needed here
    case = factory.case_in("approved")
    clinician = factory.person("clinician")
    incident = report_incident(session, factory.settings, deployment=subject_of(session, case).deployment,
                               severity="minor", reporter=clinician, what_happened="Wrong ward in a letter.")
    session.commit()
    client = app.test_client()
    client.post("/login", data={"email": clinician.email, "password": PASSWORD})
    image = _image("PNG")
    response = client.post(f"/incidents/{incident.id}/documents",
                           data={"doc_type": "other", "file": (io.BytesIO(image), "screen.png")},
                           content_type="multipart/form-data", follow_redirects=True)
    assert response.status_code == 200 and b"screen.png" in response.data
    document = session.execute(select(Document)).scalars().one()
    assert (document.subject_type, document.subject_id) == ("incident", incident.id)
    download = client.get(f"/documents/{document.id}")
    assert download.status_code == 200 and download.data == image and download.mimetype == "image/png"
    stranger = app.test_client()
    stranger.post("/login", data={"email": factory.person("ai1").email, "password": PASSWORD})
    assert stranger.get(f"/documents/{document.id}").status_code == 404
    assert stranger.post(f"/incidents/{incident.id}/documents",
                         data={"doc_type": "other", "file": (io.BytesIO(image), "x.png")},
                         content_type="multipart/form-data").status_code == 404


def test_evidence_for_a_condition_of_approval_is_attached_on_the_deployment_page(app, session, factory):
    from governance.models import ApprovalCondition

    app.config["GOVERNANCE"] = factory.settings.replace(dossier_dispatch="queue")  # no dossier needed here
    case = factory.case_in("approved_with_conditions")
    condition = session.execute(select(ApprovalCondition)).scalars().first()
    client = app.test_client()
    client.post("/login", data={"email": factory.person("submitter").email, "password": PASSWORD})
    page = client.get(f"/deployments/{case.deployment_id}")
    assert f'value="approval_condition:{condition.id}"'.encode() in page.data
    response = client.post(f"/deployments/{case.deployment_id}/documents",
                           data={"subject": f"approval_condition:{condition.id}", "doc_type": "other",
                                 "file": (io.BytesIO(b"re-audit done\n"), "reaudit.txt")},
                           content_type="multipart/form-data", follow_redirects=True)
    assert response.status_code == 200 and b"reaudit.txt" in response.data
    document = session.execute(select(Document)).scalars().one()
    assert (document.subject_type, document.subject_id, document.deployment_id) == \
        ("approval_condition", condition.id, case.deployment_id)
    other = factory.deployment()  # a subject of another deployment is not accepted through this one's page
    refused = client.post(f"/deployments/{other.id}/documents",
                          data={"subject": f"approval_condition:{condition.id}", "doc_type": "other",
                                "file": (io.BytesIO(b"x\n"), "x.txt")}, content_type="multipart/form-data",
                          follow_redirects=True)
    assert session.execute(select(sa.func.count(Document.id))).scalar() == 1 and b"x.txt" not in refused.data
