"""The rule-based de-identifier: each recogniser pinned by a table of positive and negative cases, placeholders
consistent within a record, idempotence, a property test with planted identifiers, the generator reproducing the
shipped validation set, and recall/precision floors on it (set a little below what benchmarks/deid_recall.py
measured). Assertions compare spans, types and booleans only, never identifier text, and test ids are labels."""

from __future__ import annotations

import importlib.util
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance import deid
from governance.deid import Finding, evaluate, find, load_validation, scrub, scrub_record

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def resident_id(region: str = "110101", born: date = date(1990, 3, 7), sequence: int = 123, valid: bool = True) -> str:
    """A GB 11643-1999 number, computed here independently of the module (valid=False: a wrong check character)."""
    first17 = f"{region}{born:%Y%m%d}{sequence:03d}"
    check = "10X98765432"[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]
    return first17 + (check if valid else "10X98765432"[("10X98765432".index(check) + 1) % 11])


VALID_ID = resident_id()
WRONG_CHECK_ID = resident_id(valid=False)


def spans(text: str, *expected: tuple[str, str]) -> list[Finding]:
    """The findings the table expects: (type, substring) located in the text."""
    found = []
    for kind, part in expected:
        assert part in text
        found.append(Finding(kind, text.index(part), text.index(part) + len(part)))
    return sorted(found, key=lambda f: f.start)


# (label, text, expected (type, substring) pairs). Positive and negative cases of every recogniser.
CASES = [
    # resident_id: checksum alone suffices; a wrong check character needs a context word; 15 digits need one too
    ("id valid, no context", f"号码{VALID_ID}请核对", [("resident_id", VALID_ID)]),
    ("id valid, X check", "请核对" + resident_id(sequence=2) + "。", [("resident_id", resident_id(sequence=2))]),
    ("id wrong check, no context", f"号码{WRONG_CHECK_ID}请核对", []),
    ("id wrong check, context", f"身份证号{WRONG_CHECK_ID}，", [("resident_id", WRONG_CHECK_ID)]),
    ("id spaced 6-8-4", f"ID {VALID_ID[:6]} {VALID_ID[6:14]} {VALID_ID[14:]} ok",
     [("resident_id", f"{VALID_ID[:6]} {VALID_ID[6:14]} {VALID_ID[14:]}")]),
    ("id 15 digits, context", "老身份证号码是110101900307123，", [("resident_id", "110101900307123")]),
    ("id 15 digits, no context", "编号110101900307123，", []),
    ("id in English", f"My ID card number is {VALID_ID}.", [("resident_id", VALID_ID)]),
    # phone
    ("mobile plain", "电话13800138000找我", [("phone", "13800138000")]),
    ("mobile 3-4-4 spaces", "打 138 0013 8000 就行", [("phone", "138 0013 8000")]),
    ("mobile hyphens", "手机：138-0013-8000。", [("phone", "138-0013-8000")]),
    ("mobile +86", "call +86 13800138000 now", [("phone", "+86 13800138000")]),
    ("mobile 0086", "0086-13800138000", [("phone", "0086-13800138000")]),
    ("landline hyphen", "座机010-62345678，", [("phone", "010-62345678")]),
    ("landline brackets", "请拨(021) 52345678咨询", [("phone", "(021) 52345678")]),
    ("US brackets", "Call (555) 123-4567 today.", [("phone", "(555) 123-4567")]),
    ("US +1", "Call +1 555 123 4567 today.", [("phone", "+1 555 123 4567")]),
    ("US hyphens", "Call 555-123-4567 today.", [("phone", "555-123-4567")]),
    ("UK +44", "Ring +44 20 7946 0958 please.", [("phone", "+44 20 7946 0958")]),
    ("phone odd spacing after context", "phone: 555 0123 456.", [("phone", "555 0123 456")]),
    ("blood pressure is no phone", "血压150/95，心率88次/分。", []),
    ("dose is no phone", "Take 500 mg twice a day for 10 days.", []),
    ("short number is no phone", "检查号码12345", []),
    # email
    ("email", "邮箱zhang.wei88@example.com谢谢", [("email", "zhang.wei88@example.com")]),
    ("email English", "Send to j.smith+labs@mail.example.org.", [("email", "j.smith+labs@mail.example.org")]),
    ("at sign is no email", "see @pharmacy at 5 pm", []),
    # record_number
    ("病历号", "病历号：ZY12345678，", [("record_number", "ZY12345678")]),
    ("住院号为", "住院号为20230815001。", [("record_number", "20230815001")]),
    ("门诊号是", "门诊号是MZ12345678", [("record_number", "MZ12345678")]),
    ("就诊卡号", "就诊卡号#A0099231", [("record_number", "A0099231")]),
    ("MRN", "MRN: 00482913.", [("record_number", "00482913")]),
    ("medical record number", "medical record number 123456", [("record_number", "123456")]),
    ("admission no.", "Admission No. A1234567 today", [("record_number", "A1234567")]),
    ("patient ID", "Patient ID #E12345", [("record_number", "E12345")]),
    ("encounter no.", "Encounter no. E663369-01: seen", [("record_number", "E663369-01")]),
    ("NHS number", "NHS number 943 476 5919,", [("record_number", "943 476 5919")]),
    ("bed number stays", "3床，床号12，夜间咳嗽", []),
    ("record word without code", "Please update the medical record today.", []),
    # birth_date: only next to a birth word
    ("出生日期", "出生日期1990-03-07，", [("birth_date", "1990-03-07")]),
    ("生于", "我女儿生于2019年3月7日，", [("birth_date", "2019年3月7日")]),
    ("date then 出生", "1990年3月7日出生的", [("birth_date", "1990年3月7日")]),
    ("dotted", "出生于1990.03.07", [("birth_date", "1990.03.07")]),
    ("slashes", "生日：2019/3/7", [("birth_date", "2019/3/7")]),
    ("DOB", "DOB 03/07/1990, seen today", [("birth_date", "03/07/1990")]),
    ("date of birth", "Date of birth: 7 March 1990.", [("birth_date", "7 March 1990")]),
    ("born on", "She was born on March 7, 1990 in Leeds.", [("birth_date", "March 7, 1990")]),
    ("visit date stays", "2024-03-07复诊，复查血常规。", []),
    ("visit date after birth date stays", "出生日期1990-01-01，2024-03-07就诊",
     [("birth_date", "1990-01-01")]),
    ("days of medicine stay", "服药3天后皮疹消退", []),
    ("生化 is no birth", "2024年3月7日生化检查正常", []),
    ("English visit stays", "Seen on March 7, 2024 for a sprain.", []),
    ("newborn is no birth word", "newborn 2024-03-07 screening", []),
    # address
    ("full Chinese address", "家住北京市朝阳区建国路88号3号楼1单元502室，",
     [("address", "北京市朝阳区建国路88号3号楼1单元502室")]),
    ("住在 address", "我住在上海市徐汇区漕溪北路100号，离医院远", [("address", "上海市徐汇区漕溪北路100号")]),
    ("province to street", "浙江省杭州市西湖区文三路100号", [("address", "浙江省杭州市西湖区文三路100号")]),
    ("estate address", "快递送到阳光花园小区7栋2单元301就行", [("address", "阳光花园小区7栋2单元301")]),
    ("地址 context", "地址：翠苑五区12幢，", [("address", "翠苑五区12幢")]),
    ("Baker Street", "He lives at 221B Baker Street.", [("address", "221B Baker Street")]),
    ("US full", "Mail 1600 Pennsylvania Ave NW, Washington, DC 20500 today",
     [("address", "1600 Pennsylvania Ave NW, Washington, DC 20500")]),
    ("UK with flat", "Visit 12 Oak Road, Flat 3 tomorrow", [("address", "12 Oak Road, Flat 3")]),
    ("UK postcode", "at 45 Maple Grove, Leeds LS6 2AB.", [("address", "45 Maple Grove, Leeds LS6 2AB")]),
    ("floor of a clinic stays", "心内科门诊在门诊楼3层", []),
    ("near the hospital stays", "我住在医院附近，走路十分钟", []),
    ("walking stays", "走路时膝盖疼，上楼更明显", []),
    ("hospital name stays", "请问北京协和医院的挂号流程？", []),
    ("ward and room stay", "Room 12 on Ward 5 has a broken bell.", []),
    # name, Chinese
    ("患者 name", "患者张伟今天头痛", [("name", "张伟")]),
    ("我叫 double surname", "我叫欧阳娜娜，", [("name", "欧阳娜娜")]),
    ("姓名", "姓名：王小明，性别：男", [("name", "王小明")]),
    ("name before 医生", "王小明医生说没事", [("name", "王小明")]),
    ("name before 先生", "李明先生您好", [("name", "李明")]),
    ("thanks before name", "感谢李明医生", [("name", "李明")]),
    ("family word", "我母亲刘秀英今天出院", [("name", "刘秀英")]),
    ("患者高血压 stays", "患者高血压十年，血压控制可。", []),
    ("already masked stays", "患者王某，男，58岁", []),
    ("surname and title stays", "请问张医生周三出诊吗？王阿姨说好。", []),
    ("preposition stays", "患者于昨日入院，医生说高度怀疑肺炎。", []),
    ("我是 disease stays", "我是高血压患者，我是高中生。", []),
    # name, English
    ("Mr.", "Mr. Smith called.", [("name", "Smith")]),
    ("Dr without dot", "Dr House said so.", [("name", "House")]),
    ("my name is", "My name is Sarah Connor and I", [("name", "Sarah Connor")]),
    ("patient", "patient John A. Smith was seen", [("name", "John A. Smith")]),
    ("son", "my son Jack has a fever", [("name", "Jack")]),
    ("apostrophe", "Mrs O'Brien is here", [("name", "O'Brien")]),
    ("Patient Safety stays", "The Patient Safety team called.", []),
    ("I am Diabetic stays", "I am Diabetic and tired.", []),
    ("Dr visits stays", "Can Dr visits be by video?", []),
    ("Jackson is not son", "Jackson Heights clinic", []),
]


CASES_BY_LABEL = {label: (text, expected) for label, text, expected in CASES}


@pytest.mark.parametrize("label", list(CASES_BY_LABEL))
def test_recognisers(label: str) -> None:
    text, expected = CASES_BY_LABEL[label]
    found, wanted = find(text), spans(text, *expected)  # compared as spans, so a failure shows no text
    assert found == wanted


def test_find_is_sorted_and_non_overlapping() -> None:
    for record in load_validation():
        found = find(record.text)
        assert all(a.end <= b.start for a, b in zip(found, found[1:], strict=False))
        assert all(f.type in deid.TYPES for f in found)


def test_placeholders_are_consistent_within_a_record() -> None:
    fields, removed = scrub_record({
        "prompt": f"我是患者张伟，身份证号{VALID_ID}，电话13800138000。",
        "context": "张伟的家属想知道结果，回电 138 0013 8000，另有家属李娜。",
        "response": None,
        "note": "",
    })
    expected = {"prompt": "我是患者[NAME_1]，身份证号[RESIDENT_ID_1]，电话[PHONE_1]。",
                "context": "[NAME_1]的家属想知道结果，回电 [PHONE_1]，另有家属[NAME_2]。", "response": "", "note": ""}
    matches = fields == expected  # a bare boolean: a failing assertion then shows no (possibly unscrubbed) text
    assert matches
    assert removed == Counter({"name": 3, "resident_id": 1, "phone": 2})


def test_a_name_found_in_one_field_is_replaced_in_the_others_first_appearance_numbers() -> None:
    fields, _ = scrub_record({"a": "Sarah said hello.", "b": "My name is Sarah Connor; Mrs Connor is fine."})
    matches = fields == {"a": "[NAME_1] said hello.", "b": "My name is [NAME_1]; Mrs [NAME_1] is fine."}
    assert matches


def test_numbering_restarts_per_record() -> None:
    first, _ = scrub("患者李明，家属王芳")
    second, _ = scrub("患者王芳")
    matches = (first, second) == ("患者[NAME_1]，家属[NAME_2]", "患者[NAME_1]")
    assert matches


def test_placeholders_are_never_matched_and_scrubbing_is_idempotent() -> None:
    assert find("[NAME_1] [PHONE_2] 身份证号[RESIDENT_ID_1] 住址：[ADDRESS_1] MRN: [RECORD_NUMBER_3]") == []
    for record in load_validation():
        once, _ = scrub(record.text)
        twice, removed = scrub(once)
        unchanged = twice == once and not removed
        assert unchanged


def test_public_api() -> None:
    assert deid.VERSION == "deid-rules/1"
    assert deid.TYPES == ("name", "resident_id", "phone", "record_number", "address", "birth_date", "email")
    with pytest.raises(AttributeError):
        Finding("name", 0, 1).type = "x"  # type: ignore[misc]


# ----------------------------------------------------------------------------------------------- property test

class Planted(str):
    """A generated identifier whose repr hides it, so a failing example prints no identifier."""

    def __repr__(self) -> str:
        return "<planted identifier>"


REGIONS = ("110101", "310104", "440106", "510107", "650102", "820000")
resident_ids = st.builds(lambda region, born, sequence: Planted(resident_id(region, born, sequence)),
                         st.sampled_from(REGIONS), st.dates(date(1900, 1, 1), date(2025, 12, 31)),
                         st.integers(0, 999))
mobiles = st.builds(
    lambda prefix, rest, style: Planted(("{0}{1}", "{0} {2} {3}", "{0}-{2}-{3}", "+86 {0}{1}", "+86 {0} {2} {3}")[
        style].format(prefix, rest, rest[:4], rest[4:])),
    st.sampled_from([f"1{d}{e}" for d in "3456789" for e in "0123456789"]),
    st.text("0123456789", min_size=8, max_size=8), st.integers(0, 4))
emails = st.builds(lambda user, host, tld: Planted(f"{user}@{host}.{tld}"),
                   st.from_regex(r"[a-z][a-z0-9._]{0,10}[a-z0-9]", fullmatch=True),
                   st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True), st.sampled_from(["com", "cn", "org"]))
FILLER = ("最近头痛", "请问", "电话", "身份证号", "患者", "服药3天", "血压150/95", "谢谢", "医生您好", "我的邮箱",
          "Hello", "please call", "my email is", "DOB", "take 500 mg", "thanks", "2024-03-07", "the patient", "MRN")
filler = st.lists(st.sampled_from(FILLER), max_size=4).map(lambda words: " ".join(words))
separators = st.sampled_from(["", " ", "，", "：", ", ", "。", "\n"])


class Hidden(str):
    def __repr__(self) -> str:
        return "<filler>"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted=st.one_of(resident_ids, mobiles, emails), before=filler.map(Hidden), after=filler.map(Hidden),
       left=separators, right=separators)
def test_a_planted_identifier_never_survives(planted: Planted, before: str, after: str, left: str,
                                              right: str) -> None:
    if before and before[-1].isascii() and before[-1].isalnum() and not left:
        left = " "  # letters glued to the identifier make a different token, not this identifier
    if after and after[0].isascii() and after[0].isalnum() and not right:
        right = " "
    scrubbed, removed = scrub(f"{before}{left}{planted}{right}{after}")
    survived = str(planted) in scrubbed
    assert not survived and sum(removed.values()) >= 1


# ------------------------------------------------------------------------------------------ the validation set

@pytest.fixture(scope="module")
def measured() -> dict:
    return evaluate()


def test_the_generator_reproduces_the_shipped_set(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_deid_validation", ROOT / "scripts/make_deid_validation.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    generator.write(tmp_path / "synthetic.jsonl")
    assert (tmp_path / "synthetic.jsonl").read_bytes() == deid.VALIDATION_FILE.read_bytes()


def test_the_shipped_set_is_well_formed() -> None:
    records = load_validation()
    assert len(records) == 400 and len({r.id for r in records}) == 400
    assert Counter(r.lang for r in records) == {"zh": 200, "en": 200}
    assert sum(not r.spans for r in records) >= 40  # identifier-free texts, for precision
    assert all(s.type in deid.TYPES and 0 <= s.start < s.end <= len(r.text) for r in records for s in r.spans)
    assert all(len(r.spans) <= 4 for r in records)
    assert {s.type for r in records for s in r.spans} == set(deid.TYPES)


#: Floors about 0.02 below the figures in benchmarks/results/deid_recall.json; raise them when the rules improve.
FLOORS = {
    "overall": (0.83, 0.97),
    "name": (0.83, 0.95), "resident_id": (1.0, 1.0), "phone": (0.82, 0.98), "record_number": (0.89, 0.98),
    "address": (0.79, 0.98), "birth_date": (0.70, 0.98), "email": (0.83, 0.98),
    "zh": (0.89, 0.98), "en": (0.76, 0.95),
}


@pytest.mark.parametrize("scope", list(FLOORS))
def test_recall_and_precision_floors(measured: dict, scope: str) -> None:
    rates = (measured["overall"] if scope == "overall" else measured["by_type"].get(scope)
             or measured["by_language"][scope])
    recall_floor, precision_floor = FLOORS[scope]
    assert rates["recall"] >= recall_floor
    assert rates["precision"] >= precision_floor


def test_evaluate_reports_its_shape(measured: dict) -> None:
    assert measured["version"] == deid.VERSION and measured["n_records"] == 400
    assert set(measured["by_type"]) == set(deid.TYPES) and set(measured["by_language"]) == {"zh", "en"}
    assert measured["overall"]["removed"] >= measured["overall"]["recall"]


def test_evaluate_on_given_records() -> None:
    record = deid.LabelledRecord("t-1", "zh", "患者张伟，电话13800138000", (Finding("name", 2, 4),))
    result = evaluate([record])
    assert result["n_records"] == 1
    assert result["by_type"]["name"]["recall"] == 1.0 and result["by_type"]["phone"]["precision"] == 0.0
    assert result["overall"]["precision"] == 0.5
