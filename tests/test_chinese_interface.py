"""A reader whose language is Chinese: one place decides the language (tested with Babel's real locale objects),
bilingual data (checklists, obligation titles) comes in Chinese, and the main pages carry no untranslated English
sentence outside identifiers, code, citations of English-only data (marked ``lang="en"``) and the case's own data."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel import Locale
from sqlalchemy import select

from governance import obligations, queries
from governance.models import Deployment
from governance.web.i18n import LOCALES, language_of, page_language, select_locale

from .factories import FAST_TRACK_EXAMPLE, FULL_BOARD_EXAMPLE
from .test_web import login

ROOT = Path(__file__).resolve().parents[1]

# --- the one place that decides --------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["zh", "zh_CN", "zh_Hans", "zh_Hans_CN", "zh_SG", "zh_Hans_SG", "zh_TW", "zh_HK"])
def test_every_chinese_babel_locale_is_chinese(code):
    locale = Locale.parse(code)
    assert locale.language == "zh"
    assert language_of(locale) == "zh"
    assert language_of(str(locale)) == "zh"  # its string form too (zh_CN parses to zh_Hans_CN)
    assert language_of(code) == "zh"


def test_babel_really_adds_the_script_to_zh_cn():
    """The cause of the English checklists: the interface's code zh_CN is not what Babel hands back."""
    assert str(Locale.parse("zh_CN")) == "zh_Hans_CN" != "zh_CN"
    assert language_of(Locale.parse("zh_CN")) == "zh"


@pytest.mark.parametrize("code", ["en", "en_US", "en_GB", "en_Latn_US", "fr", "de_DE"])
def test_other_babel_locales_are_english(code):
    assert language_of(Locale.parse(code)) == "en"
    assert language_of(code) == "en"


@pytest.mark.parametrize("value, expected", [(None, "en"), ("", "en"), ("zh-CN", "zh"), ("zh-Hans-CN", "zh"),
                                             ("ZH_cn", "zh"), ("en-US", "en"), ("xx_YY", "en"), ("zh_XX_bad", "zh")])
def test_strings_and_nothing(value, expected):
    assert language_of(value) == expected


def test_the_locale_codes_offered_parse_to_the_two_languages():
    assert {language_of(Locale.parse(code)) for code in LOCALES} == {"en", "zh"}


@pytest.mark.parametrize("headers, cookie, expected", [
    ({}, None, "en"),
    ({"Accept-Language": "zh-CN,zh;q=0.9"}, None, "zh"),
    ({"Accept-Language": "zh"}, None, "zh"),
    ({"Accept-Language": "en-US,en;q=0.9"}, None, "en"),
    ({"Accept-Language": "zh-CN"}, "en", "en"),
    ({"Accept-Language": "en"}, "zh_CN", "zh"),
    ({}, "fr", "en"),
])
def test_the_request_language(app, headers, cookie, expected):
    if cookie:
        headers = {**headers, "Cookie": f"locale={cookie}"}
    with app.test_request_context("/", headers=headers):
        assert page_language() == expected
    assert page_language() == "en"  # outside a request


def test_the_instance_default_locale_applies_without_a_preference(app):
    app.config["GOVERNANCE"] = app.config["GOVERNANCE"].replace(default_locale="zh_CN")
    with app.test_request_context("/"):
        assert select_locale() == "zh_CN" and page_language() == "zh"
    with app.test_request_context("/", headers={"Accept-Language": "en"}):
        assert page_language() == "en"


def test_nothing_else_compares_locales():
    """Every language decision goes through governance/web/i18n.py."""
    pattern = re.compile(r"get_locale|==\s*['\"]zh_CN['\"]|!=\s*['\"]zh_CN['\"]|['\"]zh_CN['\"]\s*[!=]=")
    offenders = []
    for path in (ROOT / "governance").rglob("*"):
        if path.suffix not in {".py", ".html"} or path.name == "i18n.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


# --- the rendered pages -----------------------------------------------------------------------------------

#: Elements whose text is not prose to translate: code, identifiers and machine output.
SKIPPED_TAGS = {"code", "pre", "script", "style", "kbd", "samp", "var"}
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
#: Attributes a reader sees or hears.
READ_ATTRIBUTES = {"title", "placeholder", "alt", "aria-label"}
WORD = re.compile(r"^[A-Za-z]+(?:['’-][A-Za-z]+)*$")
PUNCTUATION = "()[]{}\"'“”‘’,;:.!?…—–·/"
#: Latin-only runs of this many words are sentences to translate.
MIN_WORDS = 4
#: Deliberately English (keep this short; each entry says why). Data without a Chinese text in its data file is
#: marked ``lang="en"`` where it is shown instead, and the case's own data is allowed by the test below.
ALLOWED: dict[str, str] = {}


class _Reader(HTMLParser):
    """The texts a reader meets, outside code and outside elements marked as English (``lang="en"``), the reasons
    of refused actions included (translated where the page shows them, since issue 15)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[bool] = []  # per open element: hidden, inherited
        self.texts: list[str] = []

    @property
    def hidden(self) -> bool:
        return self.stack[-1] if self.stack else False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        hidden = self.hidden or tag in SKIPPED_TAGS or (attributes.get("lang") or "").lower().startswith("en")
        if not hidden:
            self.texts += [value for name, value in attrs if name in READ_ATTRIBUTES and value]
        if tag not in VOID_TAGS:
            self.stack.append(hidden)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag("br", attrs)  # attributes only, nothing opened

    def handle_endtag(self, tag):
        if tag not in VOID_TAGS and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if not self.hidden and data.strip():
            self.texts.append(data)


def english_sentences(html: str) -> list[str]:
    """Runs of ``MIN_WORDS`` or more Latin-only words: an identifier, a number, a URL, an e-mail address, a digest
    or a Chinese character breaks a run, and so does a full stop."""
    reader = _Reader()
    reader.feed(html)
    found: list[str] = []
    for text in reader.texts:
        run: list[str] = []
        for token in text.split() + [""]:
            core = token.strip(PUNCTUATION)
            if core and WORD.match(core):
                run.append(core)
                if not token.endswith((".", "!", "?")):
                    continue
            if len(run) >= MIN_WORDS:
                found.append(" ".join(run))
            run = []
    return found


def test_the_scan_finds_english_and_skips_what_is_not_prose():
    page = ("<p>这是中文。 This sentence is not translated.</p><p>仅 a b c</p><code>not a sentence to translate</code>"
            "<p lang=\"en\">Deliberately English data text</p><p>模型 Qwen/Qwen2.5-7B-Instruct sha256 deadbeef "
            "user@test.hospital https://example.org/a/b</p><input placeholder=\"Type your reason here\">"
            "<p>见 <small lang=\"en\">an English citation, here</small>，然后 Click the green button</p>"
            "<div class=\"action refused\" title=\"a refusal left in English\"><p>当前不可操作： the audit has not "
            "completed</p></div><p>Two sentences. Of four words each? No: three.</p>")
    assert english_sentences(page) == ["This sentence is not translated", "Type your reason here",
                                       "Click the green button", "a refusal left in English",
                                       "the audit has not completed", "Of four words each"]


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in _strings(item)]
    return []


def _chinese(client):
    response = client.post("/locale/zh_CN", data={"next": "/"})
    assert response.status_code == 302


@pytest.mark.parametrize("example", [FAST_TRACK_EXAMPLE, FULL_BOARD_EXAMPLE])
def test_the_main_pages_are_chinese_for_a_chinese_reader(app, client, factory, example):
    _render_and_scan(app, client, factory, example)


def test_the_pages_show_refused_actions_in_chinese(app, client, factory):
    """The chair's case page offers decisions the votes do not support yet: their reasons are Chinese sentences."""
    pages = _render_and_scan(app, client, factory, FULL_BOARD_EXAMPLE)
    chair_case = next(page for path, page in pages.items() if path.startswith("/submissions/") and "(chair)" in path)
    assert 'class="refusal"' in chair_case and "当前不可操作：" in chair_case


def _render_and_scan(app, client, factory, example) -> dict[str, str]:
    """Renders the main pages for a reviewer and for the chair, in Chinese; fails on an untranslated sentence and
    returns the pages."""
    case = factory.case_in("in_review", example)
    chair = factory.person("chair")
    if case.pathway == "ai_subcommittee":
        reviewer = factory.person("ai1")
        factory.fire(case, "assign_reviewer", chair, reviewer=reviewer.email)
    else:
        reviewer = factory.person("board1")
        factory.fire(case, "schedule_meeting", chair, meeting=factory.meeting().id)
    factory.fire(case, "declare_conflict", reviewer, has_conflict=False)
    deployment = factory.session.get(Deployment, case.deployment_id)
    # The case's own data (what the submitter typed: names, descriptions, the case title) is in whatever language
    # it was written in; the fixtures' descriptors are English.
    own_data = [deployment.name, case.title, *_strings(deployment.descriptor)]
    people = [p.name for p in (chair, reviewer, factory.person("submitter"))]

    pages: dict[str, str] = {}
    login(client, reviewer)
    _chinese(client)
    for path in ("/", f"/submissions/{case.id}", f"/submissions/{case.id}/checklist", "/review"):
        response = client.get(path)
        assert response.status_code == 200, path
        pages[path] = response.data.decode()

    second = app.test_client()
    login(second, factory.user("irb_chair", "irb_member", "compliance_officer", "submitter", "admin"))
    _chinese(second)
    for path in ("/", "/cases", f"/submissions/{case.id}", "/registry", "/deployments/",
                 f"/deployments/{deployment.id}"):
        response = second.get(path)
        assert response.status_code == 200, path
        pages[f"{path} (chair)"] = response.data.decode()

    for path, page in pages.items():
        assert '<html lang="zh-CN">' in page, path

    # The checklist's questions, title and evidence are the Chinese ones from checklists/*.yaml.
    checklist = queries.checklist_of(factory.session, case, factory.settings)
    items = checklist.applicable_items(queries.case_facts(factory.session, case))
    page = pages[f"/submissions/{case.id}/checklist"]
    assert checklist.title.zh in page and checklist.title.en not in page
    for item in items:
        assert item.text.zh in page and item.evidence.zh in page, item.id
        assert item.text.en not in page and item.evidence.en not in page, item.id

    # Obligation titles come from regulations/*.yaml in Chinese where the file has one.
    titles = [o["title_zh"] for o in obligations.with_status(factory.session, case)]
    assert all(titles) and titles == [t for t in titles if t in pages[f"/submissions/{case.id} (chair)"]]

    own = [_words(text) for text in own_data + people]
    untranslated = {}
    for path, page in pages.items():
        left = sorted({s for s in english_sentences(page) if s not in ALLOWED and not any(s in text for text in own)})
        if left:
            untranslated[path] = left
    assert not untranslated, untranslated
    return pages


def _words(text: str) -> str:
    """A text as :func:`english_sentences` joins its words (punctuation dropped, single spaces)."""
    return " ".join(token.strip(PUNCTUATION) for token in text.split())


# --- every page ------------------------------------------------------------------------------------------
#: How the test fills each URL argument of the app's GET routes (a new argument name fails the test below, so a
#: new page cannot be left out of the scan by accident).
ARGUMENTS = ("deployment_id", "submission_id", "incident_id", "meeting_id", "user_id", "dossier_id", "ext",
             "filename", "document_id")


def test_every_page_of_the_interface_is_chinese_for_a_chinese_reader(app, client, factory):
    """Every GET route of the app, filled with real records, for the chair (every role) and for an assigned board
    reviewer: each HTML page it answers is in Chinese, with no untranslated sentence; what is not HTML (the API,
    downloads, JSON feeds, static files) is said to be so by its content type."""
    from governance.operations.documents import attach_document
    from governance.operations.incidents import report_incident

    case = factory.case_in("in_review", FULL_BOARD_EXAMPLE)
    chair = factory.person("chair")
    meeting = factory.meeting()
    reviewer = factory.person("board1")
    factory.fire(case, "schedule_meeting", chair, meeting=meeting.id)
    factory.fire(case, "declare_conflict", reviewer, has_conflict=False)
    approved = factory.case_in("approved", FAST_TRACK_EXAMPLE)
    approved_deployment = factory.session.get(Deployment, approved.deployment_id)
    incident = report_incident(factory.session, factory.settings, deployment=approved_deployment, severity="minor",
                               what_happened="A reply cited a withdrawn guideline.",
                               reporter=factory.person("clinician"))
    document = attach_document(factory.session, factory.settings, case, doc_type="other", filename="notes.txt",
                               data="评审会议记录".encode(), actor=chair)
    factory.session.commit()
    everyone = factory.user("irb_chair", "irb_member", "compliance_officer", "submitter", "admin")
    values = {"deployment_id": approved_deployment.id, "submission_id": case.id, "incident_id": incident.id,
              "meeting_id": meeting.id, "user_id": reviewer.id, "dossier_id": 999_999, "ext": "xml",
              "filename": "style.css", "document_id": document.id}
    own = [_words(text) for text in [
        *factory.session.execute(select(Deployment.name)).scalars(),
        *_strings(approved_deployment.descriptor), *_strings(factory.session.get(Deployment, case.deployment_id).descriptor),
        case.title, approved.title, incident.what_happened,
        *(p.name for p in (chair, reviewer, everyone, factory.person("submitter"), factory.person("clinician")))]]

    readers = []
    for person in (everyone, reviewer):
        reader = app.test_client()
        login(reader, person)
        _chinese(reader)
        readers.append(reader)

    unknown, unanswered, untranslated, pages = [], [], {}, 0
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if "GET" not in rule.methods or rule.endpoint.startswith("auth."):  # sign-in flows, not pages
            continue
        if set(rule.arguments) - set(ARGUMENTS):
            unknown.append(rule.rule)
            continue
        path = rule.build({name: values[name] for name in rule.arguments}, append_unknown=False)[1]
        for reader in readers:
            response = reader.get(path)
            response.close()
            if response.status_code == 200:
                break
        assert response.status_code < 500, f"{path}: {response.status_code}"
        if response.mimetype != "text/html":
            continue
        if response.status_code != 200 and "dossier_id" not in rule.arguments:  # no PDF rendered here: a 404 page
            unanswered.append(f"{path}: {response.status_code}")
            continue
        page = response.data.decode()
        pages += 1
        assert '<html lang="zh-CN">' in page, path
        left = sorted({s for s in english_sentences(page) if s not in ALLOWED and not any(s in text for text in own)})
        if left:
            untranslated[path] = left
    assert not unknown, f"routes with arguments this test cannot fill: {unknown}"
    assert not unanswered, unanswered
    assert pages >= 30
    assert not untranslated, "\n".join(f"{path}: {sentence}" for path, left in untranslated.items() for sentence in left)
