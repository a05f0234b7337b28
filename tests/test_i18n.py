"""The interface in Chinese and English: the zh_CN catalogue is complete and compiled, every string the
templates and views mark is in it, and the language switches by cookie or Accept-Language."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from werkzeug.exceptions import BadRequest, Conflict, Forbidden, MethodNotAllowed, NotFound, RequestEntityTooLarge

from governance import domain
from governance.classification.descriptor import Descriptor
from governance.web import HTTP_DESCRIPTIONS
from governance.web.vocabulary import TERMS, words
from governance.workflow import MACHINES, DeploymentStatus, SubmissionState

from .test_web import login

ROOT = Path(__file__).resolve().parents[1]
#: Babel parses the interface's code zh_CN to zh_Hans_CN (its likely script), and Flask-Babel looks for that folder.
CATALOGUE = ROOT / "governance" / "translations" / "zh_Hans_CN" / "LC_MESSAGES"
#: The keywords of `make translations` (``pybabel extract -k _l -k N_`` on top of Babel's defaults).
KEYWORDS = ("_l", "N_")
PLACEHOLDER = re.compile(r"%(?:\([A-Za-z_][A-Za-z0-9_]*\))?[-#0 +]*\d*(?:\.\d+)?[sdifrx%]")


def _po():
    with (CATALOGUE / "messages.po").open("rb") as handle:
        return read_po(handle, locale="zh_Hans_CN")


def _entries():
    return [message for message in _po() if message.id]


def _msgid(message) -> str:
    return message.id if isinstance(message.id, str) else message.id[0]


def test_every_message_is_translated_and_none_is_fuzzy():
    entries = _entries()
    assert len(entries) > 500
    untranslated = [_msgid(m) for m in entries
                    if not (m.string if isinstance(m.string, str) else all(m.string))]
    fuzzy = [_msgid(m) for m in entries if m.fuzzy]
    assert not untranslated, f"untranslated in messages.po: {untranslated}"
    assert not fuzzy, f"fuzzy in messages.po: {fuzzy}"
    assert not _po().fuzzy


def test_every_placeholder_of_a_msgid_is_in_its_msgstr():
    for message in _entries():
        ids = [message.id] if isinstance(message.id, str) else list(message.id)
        strings = [message.string] if isinstance(message.string, str) else list(message.string)
        wanted = sorted(p for text in ids[:1] for p in PLACEHOLDER.findall(text))
        for text in strings:
            assert sorted(PLACEHOLDER.findall(text)) == wanted, (message.id, text)


def test_the_catalogue_passes_babels_own_checks():
    problems = [(message.id, [str(error) for error in errors]) for message, errors in _po().check()]
    assert not problems


def test_the_compiled_catalogue_is_up_to_date():
    with (CATALOGUE / "messages.mo").open("rb") as handle:
        compiled = {m.id: m.string for m in read_mo(handle) if m.id}
    source = {m.id: m.string for m in _entries()}
    stale = sorted(str(key) for key in source.keys() ^ compiled.keys())
    changed = sorted(str(key) for key in source.keys() & compiled.keys() if source[key] != compiled[key])
    assert not stale and not changed, (f"messages.mo is out of date with messages.po (run `make translations`): "
                                       f"{(stale + changed)[:10]}")


def test_every_marked_string_is_in_the_catalogue():
    """Re-extracts as `make translations` does: a new string fails here with its file and line until it is translated."""
    with (ROOT / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    keywords = {**DEFAULT_KEYWORDS, **{name: None for name in KEYWORDS}}
    known = {_msgid(m) for m in _entries()}
    found, missing = 0, []
    for filename, lineno, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=keywords):
        text = message if isinstance(message, str) else message[0]
        found += 1
        if text not in known:
            missing.append(f"{filename}:{lineno}: {text!r}")
    assert found > 500
    assert not missing, "not in governance/translations/zh_Hans_CN/LC_MESSAGES/messages.po (run `make translations` " \
                        "and translate):\n" + "\n".join(missing)


def test_the_reports_are_not_extracted():
    """The dossier is bilingual by design: nothing under reports/ goes into the interface's catalogue."""
    assert not [m for m in _entries() if any(path.startswith("reports/") for path, _ in m.locations)]


def test_the_vocabulary_covers_every_value_the_pages_show_as_words():
    enums = (SubmissionState, DeploymentStatus, domain.Role, domain.SubmissionKind, domain.Pathway, domain.Materiality,
             domain.Outcome, domain.VoteMeaning, domain.AuditVerdict, domain.AuditStatus, domain.Gate, domain.Severity,
             domain.SuspensionCause, domain.IncidentSource)
    values = {member.value for enum in enums for member in enum}
    values |= {t.event for machine in MACHINES.values() for t in machine.transitions}
    values |= set(Descriptor.model_fields)
    for name, info in Descriptor.model_fields.items():
        annotation = info.annotation
        inner = get_args(annotation)[0] if getattr(annotation, "__origin__", None) is list else annotation
        values |= {v for v in get_args(inner) if isinstance(v, str)}
    values |= {"open", "under_review", "closed", "scheduled", "in_session", "member", "adviser", "guest",
               "satisfied", "not_applicable", "read", "submit", "device", "ambiguous", "non_device"}
    values |= {path.stem for path in (ROOT / "governance" / "audit" / "bank").glob("*.jsonl")}
    missing = sorted(v for v in values if v.replace("_", " ") not in TERMS)
    assert not missing, f"add these to governance/web/vocabulary.py TERMS: {missing}"


def test_words_keep_english_as_it_was():
    assert words("in_review") == "in review" and words("approved_with_conditions") == "approved with conditions"
    assert words(None) == "—" and words("") == "—" and words("no_such_value") == "no such value"
    assert words(3) == 3


def test_workflow_labels_are_english_and_in_the_catalogue():
    known = {_msgid(m) for m in _entries()}
    for machine in MACHINES.values():
        for t in machine.transitions:
            assert t.label in known, t.label
            for spec in t.fields:
                assert spec.label in known and (not spec.help or spec.help in known), spec
    assert MACHINES["submission"].find("submitted", "start_screening").label == "Start screening"


def test_werkzeugs_error_descriptions_are_the_ones_translated():
    assert {BadRequest.description, Forbidden.description, NotFound.description, MethodNotAllowed.description,
            Conflict.description, RequestEntityTooLarge.description} == HTTP_DESCRIPTIONS


# --- switching ---------------------------------------------------------------------------------------------


def _set_locale(client, code: str):
    response = client.post(f"/locale/{code}", data={"next": "/"})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    return response


def test_the_locale_switch_turns_the_pages_chinese_and_back(client, factory):
    case = factory.case_in("in_review")
    login(client, factory.person("chair"))
    page = client.get("/").data.decode()
    assert '<html lang="en">' in page and "Dashboard" in page and "工作台" not in page

    _set_locale(client, "zh_CN")
    page = client.get("/").data.decode()
    assert '<html lang="zh-CN">' in page
    assert "<h1>工作台</h1>" in page and "审查项目" in page and "退出登录" in page
    assert "审查中" in page  # the in_review state, through the words filter
    assert ">English</button>" in page  # the switch offers the way back

    case_page = client.get(f"/submissions/{case.id}").data.decode()
    assert '<html lang="zh-CN">' in case_page
    assert "您现在可以执行的操作" in case_page and "历史记录" in case_page and "规则轨迹" in case_page
    assert "记录决定：批准" in case_page  # a workflow label, translated where it is shown
    assert "Record decision: approved" not in case_page
    assert "指派主审委员" in case_page

    _set_locale(client, "en")
    page = client.get("/").data.decode()
    assert '<html lang="en">' in page and "<h1>Dashboard</h1>" in page and "工作台" not in page
    case_page = client.get(f"/submissions/{case.id}").data.decode()
    assert "Record decision: approved" in case_page and "What you can do now" in case_page


def test_accept_language_chooses_chinese_without_a_cookie(client, factory):
    login(client, factory.person("chair"))
    page = client.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}).data.decode()
    assert '<html lang="zh-CN">' in page and "<h1>工作台</h1>" in page
    page = client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9"}).data.decode()
    assert '<html lang="en">' in page and "<h1>Dashboard</h1>" in page
    login_page = client.get("/logout")  # GET is not allowed: the error page speaks the chosen language
    assert login_page.status_code == 405
    assert "所请求的网址不允许此请求方法" in client.get(
        "/logout", headers={"Accept-Language": "zh-CN"}).data.decode()


def test_a_refusal_page_names_the_roles_in_the_chosen_language(client, factory):
    login(client, factory.person("chair"))
    _set_locale(client, "zh_CN")
    response = client.get("/admin/users")
    assert response.status_code == 403
    assert "此页面仅供以下角色使用：系统管理员。" in response.data.decode()
    _set_locale(client, "en")
    assert "This page is for admin." in client.get("/admin/users").data.decode()


def test_the_cookie_wins_over_accept_language(client, factory):
    login(client, factory.person("chair"))
    _set_locale(client, "en")
    page = client.get("/", headers={"Accept-Language": "zh-CN"}).data.decode()
    assert '<html lang="en">' in page and "<h1>Dashboard</h1>" in page


def test_an_unknown_locale_is_ignored(client, factory):
    login(client, factory.person("chair"))
    client.post("/locale/fr", data={"next": "/"})
    assert '<html lang="en">' in client.get("/").data.decode()


def test_action_forms_and_flashes_follow_the_language(client, factory):
    case = factory.case_in("submitted")
    login(client, factory.person("chair"))
    _set_locale(client, "zh_CN")
    page = client.get(f"/submissions/{case.id}").data.decode()
    assert "开始形式审查" in page
    response = client.post(f"/submissions/{case.id}/events/start_screening", data={"lock_version": case.lock_version},
                           follow_redirects=True)
    page = response.data.decode()
    assert "已完成：开始形式审查。" in page
    assert "理由（申请人可见）" in page  # the field label of "return to submitter", now offered


@pytest.mark.parametrize("path", ["/cases", "/deployments/", "/deployments/new", "/incidents", "/incidents/new",
                                  "/notifications", "/account/", "/review", "/intake", "/meetings", "/registry", "/events",
                                  "/admin/users", "/admin/users/new", "/admin/tokens"])
def test_pages_render_in_chinese(client, factory, path):
    factory.case_in("in_review")
    login(client, factory.user("irb_chair", "admin", "compliance_officer", "submitter", "clinician"))
    _set_locale(client, "zh_CN")
    response = client.get(path)
    assert response.status_code == 200, path
    page = response.data.decode()
    assert '<html lang="zh-CN">' in page and "工作台" in page


def test_review_pages_render_in_chinese(client, factory):
    case = factory.case_in("in_review")
    reviewer = factory.person("ai1")
    factory.fire(case, "assign_reviewer", factory.person("chair"), reviewer=reviewer.email)
    login(client, reviewer)
    _set_locale(client, "zh_CN")
    pages = {f"/submissions/{case.id}/declare": "利益冲突声明", f"/submissions/{case.id}/audit": "基准测评审计"}
    for path, heading in pages.items():
        page = client.get(path).data.decode()
        assert '<html lang="zh-CN">' in page and heading in page, path
    factory.prepare_reviewer(case, reviewer)
    checklist = client.get(f"/submissions/{case.id}/checklist").data.decode()
    assert "提交审查清单" in checklist and "保存为草稿" in checklist and "> 是</label>" in checklist and "证据: " in checklist
    vote = client.get(f"/submissions/{case.id}/vote").data.decode()
    assert "投票——电子签名" in vote and "签名含义" in vote and "附条件同意" in vote
