"""A completed audit's evidence is sealed once, when the run completes, and every dossier of the run embeds it as
sealed: byte for byte the canonical JSON of the run and its results, never a file that was changed on disk or that
describes the run as it no longer stands."""

from __future__ import annotations

import json
import zlib

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

from governance.audit.store import run_rows
from governance.db import make_session_factory
from governance.dossier import evidence
from governance.dossier import keys as signing_keys
from governance.dossier.verify import _embedded_files, verify
from governance.models import AuditRun
from governance.operations.dossiers import absolute_path, emit
from governance import queries


@pytest.fixture
def app_overrides():
    return {"dossier_dispatch": "queue", "signing_passphrase": "test signing passphrase"}


@pytest.fixture
def audited(factory, session):
    """A case whose gate audit completed (demo backend), and its run."""
    case = factory.case_in("in_review")
    return case, queries.latest_audit(session, case)


def _expected(session, run: AuditRun) -> bytes:
    """The evidence as the database holds it, encoded from scratch."""
    rows = run_rows(make_session_factory(session.get_bind()), run.id)
    return evidence.json_bytes({**evidence.header(run), "items": rows})


def _sealed_files(settings) -> list:
    return sorted((settings.instance_path / evidence.EVIDENCE_DIR).glob("*.zlib"))


def _embedded(settings, dossier) -> bytes:
    with absolute_path(settings, dossier).open("rb") as handle:
        return _embedded_files(PdfFileReader(handle))[evidence.AUDIT_RESULTS]


def test_a_completed_run_is_sealed_once_and_its_dossier_embeds_it_as_the_database_has_it(
        audited, session, institution, monkeypatch):
    case, run = audited
    [sealed_file] = _sealed_files(institution)
    assert f"audit-run-{run.id}-" in sealed_file.name
    expected = _expected(session, run)

    def no_sealing(*_args, **_kwargs):
        raise AssertionError("the dossier encoded the evidence again")

    monkeypatch.setattr(evidence, "seal", no_sealing)
    dossier = emit(session, institution, case, "audit")
    session.commit()
    assert _embedded(institution, dossier) == expected
    report = verify(absolute_path(institution, dossier), [signing_keys.load_certificate(institution)])
    assert report.ok, report.failures
    assert json.loads(expected)["items"] and len(json.loads(expected)["items"]) == run.items_done


@pytest.mark.parametrize("damage", ["deflated bytes", "claimed digest", "mac"])
def test_a_sealed_file_changed_on_disk_is_not_embedded_but_sealed_again(audited, session, institution, damage):
    case, run = audited
    [sealed_file] = _sealed_files(institution)
    line, _, deflated = sealed_file.read_bytes().partition(b"\n")
    meta = json.loads(line)
    if damage == "deflated bytes":  # other results, deflated properly, under the old seal
        deflated = zlib.compress(b'{"items":[]}')
    elif damage == "claimed digest":
        meta["sha256"] = "0" * 64
    else:
        meta["mac"] = "f" * 64
    sealed_file.write_bytes(json.dumps(meta).encode() + b"\n" + deflated)

    dossier = emit(session, institution, case, "audit")
    session.commit()
    assert _embedded(institution, dossier) == _expected(session, run)
    assert evidence._read(institution, sealed_file) is not None  # sealed again in its place


def test_a_run_changed_after_sealing_is_sealed_again_as_it_stands(audited, session, institution):
    case, run = audited
    # The verdict, summary and results of a completed run are frozen by the database; its metadata is not.
    run.run_metadata = {**run.run_metadata, "note": "a note recorded after the run completed"}
    session.commit()
    dossier = emit(session, institution, case, "audit")
    session.commit()
    embedded = _embedded(institution, dossier)
    assert embedded == _expected(session, run)
    assert json.loads(embedded)["metadata"]["note"] == "a note recorded after the run completed"
    assert len(_sealed_files(institution)) == 2


def test_without_a_secret_key_nothing_is_kept_and_the_evidence_is_still_whole(audited, session, institution):
    case, run = audited
    for path in _sealed_files(institution):
        path.unlink()
    keyless = institution.model_copy(update={"secret_key": type(institution.secret_key)("")})
    sealed = evidence.audit_results(keyless, run, lambda: run_rows(make_session_factory(session.get_bind()), run.id))
    assert sealed.inflate() == _expected(session, run)
    assert _sealed_files(institution) == []


def test_the_printed_items_are_found_by_id_in_the_bank_files_without_reading_every_line(tmp_path):
    """Only exact ids match (``a-1`` is not ``a-10``), in any of the folder's files, spacing as JSON allows; an empty
    file and ids the bank lacks are no error."""
    from governance.audit.items import raw_records

    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"item_id": f"a-{n}", "stem": {"en": f"stem {n}",
                                                                                          "zh": f"题干 {n}"}})
                                                for n in range(1, 12)) + "\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"stem": "spaced", "item_id" :  "b-1"}\n\n{"item_id":"b-2","stem":"tight"}',
                                      encoding="utf-8")
    (tmp_path / "empty.jsonl").write_text("")
    found = raw_records(tmp_path, {"a-1", "a-11", "b-1", "b-2", "nowhere"})
    assert sorted(found) == ["a-1", "a-11", "b-1", "b-2"]
    assert found["a-1"]["stem"] == {"en": "stem 1", "zh": "题干 1"} and found["b-1"]["stem"] == "spaced"
    assert found["b-2"]["stem"] == "tight"
    assert raw_records(tmp_path / "a.jsonl", {"a-10"}) == {"a-10": {"item_id": "a-10", "stem": {"en": "stem 10",
                                                                                                "zh": "题干 10"}}}
