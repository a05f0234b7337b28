"""The recognisers: one small function per identifier type, each returning candidate spans in one text.

Every recogniser is a regular expression plus, where the pattern alone is too loose, context words (as data in the
tuples below) or a checksum. Candidates may overlap; :func:`candidates` returns them all and the caller
(:func:`governance.deid.find`) keeps the best non-overlapping set. Nothing here logs or prints matched text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

TYPES = ("name", "resident_id", "phone", "record_number", "address", "birth_date", "email")

#: When two candidates overlap, the type earlier here wins (checksummed and exact shapes before fuzzy ones).
PRIORITY = ("resident_id", "email", "record_number", "phone", "birth_date", "address", "name")


@dataclass(frozen=True)
class Finding:
    """One identifier: its type and its span in the text. Deliberately holds no copy of the matched text."""

    type: str
    start: int
    end: int


#: A placeholder this module writes; text inside one is never matched again (scrubbing is idempotent).
PLACEHOLDER = re.compile(r"\[(?:NAME|RESIDENT_ID|PHONE|RECORD_NUMBER|ADDRESS|BIRTH_DATE|EMAIL)_\d+\]")

HAN = "\u4e00-\u9fff"

# ---------------------------------------------------------------------------------------------------- resident_id

RESIDENT_ID_CONTEXT = ("居民身份证号码", "居民身份证号", "身份证号码", "身份证号", "身份证", "证件号码", "证件号",
                       "ID card number", "ID card no", "ID card", "identity card number", "identity card",
                       "resident ID number", "resident ID", "national ID number", "national ID", "Chinese ID")
#: ISO 7064 MOD 11-2 weights of GB 11643-1999 for the first 17 digits, and the check character for each remainder.
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"

#: Separators people type between a context word and its value: colons, "#", "是/为", "No.", "is".
SEPARATOR = r"(?:\s*(?:[:：#=-]|是|为|(?i:no\.?|number|num\.?|is|was|of))\s*){0,3}\s*"

_ID18 = re.compile(r"(?<![0-9A-Za-z])(\d{6})[ -]?(\d{8})[ -]?(\d{3}[0-9Xx])(?![0-9A-Za-z])")
_ID_AFTER_CONTEXT = re.compile(r"(?:" + "|".join(re.escape(w) for w in RESIDENT_ID_CONTEXT) + r")" + SEPARATOR
                               + r"(\d{17}[0-9Xx]|\d{15})(?![0-9A-Za-z])", re.IGNORECASE)


def valid_resident_id(number: str) -> bool:
    """GB 11643-1999: a region code starting 1-8, a real birth date from 1900 on, and the MOD 11-2 check character."""
    digits = number.upper()
    if len(digits) != 18 or not digits[:17].isdigit() or digits[0] not in "12345678":
        return False
    if ID_CHECK[sum(int(d) * w for d, w in zip(digits[:17], ID_WEIGHTS, strict=True)) % 11] != digits[17]:
        return False
    return plausible_date(int(digits[6:10]), int(digits[10:12]), int(digits[12:14]))


def plausible_date(year: int, month: int, day: int) -> bool:
    if not 1900 <= year <= 2099:
        return False
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def resident_ids(text: str) -> Iterator[Finding]:
    """18-character numbers that pass the checksum (also typed 6-8-4 with spaces); any 15 or 18 digits after a
    context word (old 15-digit IDs, and a mistyped check digit is still somebody's ID)."""
    for match in _ID18.finditer(text):
        if valid_resident_id("".join(match.groups())):
            yield Finding("resident_id", match.start(), match.end())
    for match in _ID_AFTER_CONTEXT.finditer(text):
        yield Finding("resident_id", match.start(1), match.end(1))


# ---------------------------------------------------------------------------------------------------------- phone

PHONE_CONTEXT = ("联系电话", "电话号码", "手机号码", "手机号", "电话", "手机", "座机", "联系方式", "微信号", "打我",
                 "phone number", "phone", "telephone", "tel", "mobile number", "mobile", "cell", "call me on",
                 "call me at", "contact number", "reach me at", "reach me on", "text me at", "fax")
_PHONE_SHAPES = (
    # mainland mobile, optionally +86/0086, optionally grouped 3-4-4 with spaces or hyphens
    r"(?<![\d+])(?:(?:\+|00)86[\s-]?)?1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}(?!\d)",
    # landline with an area code: 010-12345678, (021) 12345678, 0755 8888 1234, +86 10 12345678
    r"(?<![\d+])(?:(?:\+|00)86[\s-]?\(?0?\d{2,3}\)?[\s-]?|\(0\d{2,3}\)\s?|0\d{2,3}-)\d{7,8}(?!\d)",
    r"(?<![\d+])0\d{2,3}\s\d{4}\s\d{4}(?!\d)",
    # North American: (555) 123-4567, +1 555 123 4567, 555-123-4567, 555.123.4567
    r"(?<![\d+])\(\d{3}\)\s?\d{3}[\s.-]\d{4}(?!\d)",
    r"(?<![\d+])\+1[\s.-]?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}(?!\d)",
    r"(?<![\d+/-])\d{3}([.-])\d{3}\1\d{4}(?![\d/-])",
    # UK: +44 20 7946 0958, +44 (0)20 7946 0958, 020 7946 0958, 07700 900123
    r"(?<![\d+])\+44\s?(?:\(0\))?\s?\d{2,4}\s?\d{3,4}\s?\d{3,4}(?!\d)",
    r"(?<![\d+])0\d{2,4}\s\d{3,4}\s?\d{3,4}(?!\d)",
)
_PHONE = re.compile("|".join(f"(?:{shape})" for shape in _PHONE_SHAPES))
_PHONE_AFTER_CONTEXT = re.compile(r"(?<![A-Za-z])(?:" + "|".join(re.escape(w) for w in PHONE_CONTEXT) + r")"
                                  + SEPARATOR + r"(\+?\(?\d[\d\s().-]{5,20}\d)(?![\d])", re.IGNORECASE)


def phones(text: str) -> Iterator[Finding]:
    """Numbers in a phone shape anywhere; after a context word, any run of 7-15 digits with spaces/hyphens."""
    for match in _PHONE.finditer(text):
        yield Finding("phone", match.start(), match.end())
    for match in _PHONE_AFTER_CONTEXT.finditer(text):
        if 7 <= sum(c.isdigit() for c in match.group(1)) <= 15:
            yield Finding("phone", match.start(1), match.end(1))


# ---------------------------------------------------------------------------------------------------------- email

_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?![A-Za-z0-9-])")


def emails(text: str) -> Iterator[Finding]:
    for match in _EMAIL.finditer(text):
        yield Finding("email", match.start(), match.end())


# -------------------------------------------------------------------------------------------------- record_number

RECORD_CONTEXT = ("病历号", "病历编号", "住院号", "住院编号", "门诊号", "门诊编号", "病案号", "就诊卡号", "就诊号",
                  "医保卡号", "医保号", "社保卡号", "诊疗卡号", "检查号", "登记号", "ID号",
                  "medical record number", "medical record no", "medical record", "MRN", "admission number",
                  "admission no", "hospital number", "hospital no", "patient ID", "patient number", "patient no",
                  "encounter number", "encounter no", "encounter ID", "NHS number", "NHS no", "chart number",
                  "case number", "insurance number", "member ID")
#: The code: letters, digits, hyphens (and spaces between digit groups, as in NHS numbers); at least one digit.
_RECORD_AFTER_CONTEXT = re.compile(
    r"(?<![A-Za-z])(?:" + "|".join(re.escape(w) for w in RECORD_CONTEXT) + r")\.?" + SEPARATOR
    + r"((?=[A-Za-z0-9-]*\d)[A-Za-z0-9](?:[A-Za-z0-9-]|(?<=\d) (?=\d)){3,24})(?![A-Za-z0-9])", re.IGNORECASE)


def record_numbers(text: str) -> Iterator[Finding]:
    for match in _RECORD_AFTER_CONTEXT.finditer(text):
        yield Finding("record_number", match.start(1), match.end(1))


# ----------------------------------------------------------------------------------------------------- birth_date

BIRTH_CONTEXT = ("出生日期", "出生年月日", "出生年月", "出生于", "出生在", "出生", "生于", "生日是", "生日", "生日为",
                 "date of birth", "birth date", "birthdate", "birthday", "DOB", "D.O.B.", "D.O.B", "born on",
                 "born in", "born")
#: After a date, these make it a birth date ("1990年3月7日出生", "1990年3月7日生，"), but not "…日生化检查".
_BIRTH_AFTER = re.compile(rf"\s*(?:出生|生人|出世|生(?![{HAN}]))")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
_MONTH = r"(?:" + "|".join(f"{m[:3]}(?:{m[3:]})?" if len(m) > 3 else m for m in MONTHS) + r"|Sept)\.?"
_DATE_SHAPES = (
    r"\d{4}\s*年\s*\d{1,2}\s*月(?:\s*\d{1,2}\s*[日号])?",
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}",
    r"\d{1,2}[-/.]\d{1,2}[-/.]\d{4}",
    r"\d{1,2}(?:st|nd|rd|th)?(?:\s+of)?\s+" + _MONTH + r",?\s+\d{4}",
    _MONTH + r"\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4}",
    _MONTH + r"\s+\d{4}",
)
_DATE = re.compile(r"(?<![\dA-Za-z])(?:" + "|".join(f"(?:{s})" for s in _DATE_SHAPES) + r")(?![\d])", re.IGNORECASE)
_BIRTH_BEFORE = re.compile(r"(?<![A-Za-z])(?:" + "|".join(re.escape(w) for w in BIRTH_CONTEXT) + r")", re.IGNORECASE)
#: Between a birth word and its date only separators and a few function words, never another date or a full stop.
_BIRTH_GAP = re.compile(r"[\s:：,，是为在于]*(?:(?i:is|was|on|in|of|the|:)\s*)*[\s:：,，]*")


def birth_dates(text: str) -> Iterator[Finding]:
    """Dates only next to a birth word: a visit date ("2024-03-07复诊", "服药3天") stays."""
    birth_words_end = {m.end() for m in _BIRTH_BEFORE.finditer(text)}
    for match in _DATE.finditer(text):
        before = any(_BIRTH_GAP.fullmatch(text[end:match.start()]) for end in birth_words_end
                     if 0 <= match.start() - end <= 12)
        after = _BIRTH_AFTER.match(text, match.end()) is not None
        if before or after:
            yield Finding("birth_date", match.start(), match.end())


# -------------------------------------------------------------------------------------------------------- address

PROVINCES = ("北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江", "安徽", "福建",
             "江西", "山东", "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州", "云南", "陕西", "甘肃", "青海",
             "台湾", "内蒙古", "广西", "西藏", "宁夏", "新疆", "香港", "澳门")
#: Characters that do not occur in place names but do right before them ("我住在", "目前在"): a place name is a run
#: of other Han characters, so an address match cannot start by swallowing the verb before it.
NOT_PLACE_CHARS = "在住于是的了我你他她们到去址为与及或往患者请问想要把被给这那哪个位说就还也目现"
ADDRESS_CONTEXT_ZH = ("现住址", "家庭住址", "家庭地址", "居住地址", "联系地址", "通讯地址", "收货地址", "住址", "地址",
                      "家住在", "家住", "住在", "居住在", "现居", "户籍地")
ADDRESS_CONTEXT_EN = ("home address", "address is", "address", "lives at", "living at", "live at", "resides at",
                      "residing at", "reside at", "moved to")
#: A context-word value must contain one of these to be an address (so "家住附近" is not one).
ADDRESS_MARKERS_ZH = ("省", "市", "区", "县", "镇", "乡", "村", "路", "街", "巷", "弄", "号", "楼", "栋", "幢", "室",
                      "单元", "小区", "花园", "公寓", "苑")
STREET_TYPES_EN = ("Street", "St", "Road", "Rd", "Avenue", "Ave", "Lane", "Ln", "Drive", "Dr", "Boulevard", "Blvd",
                   "Court", "Ct", "Place", "Pl", "Way", "Close", "Crescent", "Terrace", "Square", "Sq", "Parkway",
                   "Pkwy", "Highway", "Hwy", "Gardens", "Grove", "Row", "Mews", "Hill", "Park")

_P = rf"(?:(?![{NOT_PLACE_CHARS}])[{HAN}])"
#: A house, building or room number. Bounded, so a long run of digits costs linear time, not quadratic.
_N = r"(?<!\d)(?:\d{1,5}|[一二三四五六七八九十百]{1,4})"
_PROVINCE = r"(?:" + "|".join(PROVINCES) + r")(?:省|市|(?:维吾尔|壮族|回族)?自治区|特别行政区)?"
_ADMIN = (rf"(?P<province>{_PROVINCE}|{_P}{{1,6}}?(?:省|自治区))?(?P<city>{_P}{{1,6}}?(?:市|自治州|盟|地区))?"
          rf"(?P<district>{_P}{{1,6}}?(?:区|县|旗))?(?P<town>{_P}{{1,8}}?(?:街道|镇|乡))?")
_STREET = (rf"(?P<street>(?<!\d)(?:{_P}|\d){{1,10}}?(?:大道|大街|路|街|巷|胡同|弄))(?:{_N}(?:弄|巷|支弄))?"
           rf"(?:{_N}号(?:院)?)?")
#: Greedy, so that "阳光花园小区" is one estate name and not "阳光花园" followed by a district called "小区".
_ESTATE = rf"(?P<estate>{_P}{{1,8}}(?:小区|花园|公寓|大厦|新村|家园|苑|村|社区))?"
_UNIT = (rf"(?:{_N}(?:号楼|栋|幢|座|号院|楼))?[-\s]?(?:{_N}单元)?[-\s]?(?:{_N}(?:楼|层))?[-\s]?"
         rf"(?:(?<!\d)\d{{1,5}}(?:室|号房|房|户)|(?<=[单元栋幢座])\d{{3,4}}(?!\d))?")
_ZH_ADDRESS = re.compile(rf"{_ADMIN}(?:{_STREET})?{_ESTATE}{_UNIT}")
#: A house number, room, building or unit: "88号", "502室", "3栋", "2单元".
_ZH_HOUSE_NUMBER = re.compile(rf"{_N}\s*(?:号|室|栋|幢|单元|弄)|(?<=[单元栋幢座])\d{{3,4}}")
_ZH_ADDRESS_AFTER_CONTEXT = re.compile(r"(?:" + "|".join(ADDRESS_CONTEXT_ZH) + r")[\s:：是为在]*"
                                       + rf"([{HAN}0-9A-Za-z][{HAN}0-9A-Za-z\-#（）()]{{1,40}})")

_CAP = r"[A-Z][a-zA-Z'’.-]*"
_EN_ADDRESS = re.compile(
    r"(?:(?:Flat|Apt\.?|Apartment|Unit|Suite)\s*#?\w{1,5},?\s+)?"
    r"(?<![\w-])\d{1,5}[A-Za-z]?(?:-\d{1,5})?,?\s+(?:" + _CAP + r"\s+){0,3}(?:"
    + "|".join(f"{kind}\\.?" if len(kind) <= 4 else kind for kind in STREET_TYPES_EN)
    + r")(?![\w])(?:\s+(?:NW|NE|SW|SE|N|S|E|W)(?!\w))?"
    r"(?:,?\s*(?:Flat|Apt\.?|Apartment|Unit|Suite|Ste\.?|#)\s*#?\w{1,5})?"
    r"(?:,\s*(?!(?:Flat|Apt|Unit|Suite|I|My|The|He|She|We|They|It|Phone|Tel|Email|DOB)\b)[A-Z][a-z]+"
    r"(?:\s[A-Z][a-z]+)?(?=[,.;\s]|$))?"
    r"(?:,?\s*(?:[A-Z]{2}\s+\d{5}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]?\s\d[A-Z]{2}))?")
_EN_ADDRESS_AFTER_CONTEXT = re.compile(r"(?i:\b(?:" + "|".join(ADDRESS_CONTEXT_EN) + r"))[\s:]*"
                                       + r"(\d{1,5}[A-Za-z]?\s+[A-Z][\w'’. -]{2,60}?)(?=[;.\n]|, (?:and|but|phone|"
                                         r"tel|my|I|call|email|DOB)\b|$| and )")


def addresses(text: str) -> Iterator[Finding]:
    """Chinese addresses by their administrative and street grammar, English ones by number + words + street type;
    after a context word ("住址", "lives at") the value up to the next punctuation."""
    for match in _ZH_ADDRESS.finditer(text):
        levels = sum(match.group(part) is not None for part in ("province", "city", "district", "town", "street"))
        if levels >= 2 or (levels + (match.group("estate") is not None) >= 1
                           and _ZH_HOUSE_NUMBER.search(match.group())):
            end = len(match.group().rstrip(" -"))
            yield Finding("address", match.start(), match.start() + end)
    for match in _ZH_ADDRESS_AFTER_CONTEXT.finditer(text):
        if any(marker in match.group(1) for marker in ADDRESS_MARKERS_ZH):
            yield Finding("address", match.start(1), match.end(1))
    for match in _EN_ADDRESS.finditer(text):
        yield Finding("address", match.start(), match.end())
    for match in _EN_ADDRESS_AFTER_CONTEXT.finditer(text):
        yield Finding("address", match.start(1), match.end(1))


# ----------------------------------------------------------------------------------------------------------- name

SURNAMES_DOUBLE = ("欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "令狐", "慕容", "司徒", "尉迟", "公孙", "夏侯",
                   "长孙", "宇文", "轩辕", "端木", "西门", "南宫", "独孤", "澹台", "呼延", "百里", "东郭", "万俟")
SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
            "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
            "常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季"
            "裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦"
            "戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻"
            "苑迟邝官封谈匡鞠惠荆乐冀郁胥南班储原栗燕楚鄢劳谌奚皮粟冼蔺楼盘满闻位厉伊仝区郜海阚花权强帅屠豆朴盖练"
            "廉禹井祖漆巴丰支卿国狄平计索宣晋相初门云容敬来扈晁芮都普阙浦戈伏鹿薄邸雍辜羊阿乌母裘亓修邰赫杭况那宿鲜"
            "印逯隆茹诸战慕危玉银亢嵇公哈湛宾戎勾茅利於呼居揭干但尉冶斯元束檀衣信展阴昝智幸奉植衡富尧闭由")
#: Title words right after a surname ("王先生", "李医生"): the surname alone is not a full name and these are no
#: given names.
TITLES_ZH = ("先生", "女士", "小姐", "老师", "医生", "大夫", "主任", "护士", "阿姨", "叔叔", "伯伯", "奶奶", "爷爷",
             "老人", "师傅", "同学", "教授", "院长", "经理", "总", "某", "家", "氏")
#: Words that begin with a surname character but are clinical or everyday words, so "患者高血压" is no name.
NOT_NAMES_ZH = ("高血压", "高血糖", "高血脂", "高热", "高烧", "高龄", "高危", "高度", "高中", "高压", "高位", "高峰",
                "黄疸", "黄体", "白细胞", "白天", "白带", "金属", "石膏", "全身", "全部", "全天", "任何", "何时",
                "马上", "常规", "常年", "常常", "时常", "时间", "时候", "方面", "方便", "方法", "关节", "关心", "孙子",
                "孙女", "周一", "周二", "周三", "周四", "周五", "周六", "周日", "周末", "周岁", "周围", "周期", "周身",
                "史上", "江湖", "余下", "明显", "明天", "明日", "明确", "平时", "平常", "平均", "宁可", "应该", "应当",
                "和我", "和他", "和她", "和家", "和医", "和护", "都是", "都有", "都在", "都没", "来医", "来院", "来我",
                "来复", "来看", "门诊", "国内", "国外", "海鲜", "初诊", "初次", "初步", "左侧", "左边", "左腿", "左手",
                "严重", "单侧", "单纯", "包括", "毛病", "毛发", "安全", "安静", "乐观", "谈话", "解释", "解决", "利尿",
                "云南", "燕麦", "相关", "信息", "展开", "伊始", "母乳", "母亲", "计划", "查体", "查房", "查看", "查出",
                "查到", "查了", "曾经", "曾有", "曾因", "曾在", "曾于", "曾做", "曾患", "于是", "万一", "上官方",
                "甘油", "苏醒", "华法林", "阿司匹林", "阿莫西林", "阿托伐", "谷丙", "谷草", "强的松", "盐酸", "柴胡",
                "连续", "连花", "成人", "成年", "成功", "文化", "经常", "程度", "苗条", "戴口罩", "费用", "卫生",
                "申请", "宫颈", "宫内", "冷静", "席间", "党员", "师傅", "区别", "农村", "居家", "居住", "居民", "信任",
                "晚期", "早期", "花粉", "桂枝", "麦冬", "车祸", "路上", "路过", "游泳", "沙丁", "邢台", "焦虑", "胡话",
                "向医", "向我", "伍用", "钱都", "齐全", "商量", "谷物", "简单", "项目", "闻到", "盖被", "支气管",
                "支架", "井喷", "乌头", "印象", "束缚", "衣服", "富含", "由于", "幸好", "元旦", "隆起", "容易", "普通",
                "敬请", "那么", "那天", "那个", "宿舍", "况且", "危险", "危重", "尚未", "尚可", "满意", "位置", "平躺",
                "海绵", "原因", "原来", "原发", "平素", "那里", "单亲", "全职", "余地")
NAME_CONTEXT_BEFORE_ZH = ("患者", "病人", "病患", "患儿", "家属", "姓名", "我叫", "我是", "叫做", "名叫", "儿子",
                          "女儿", "丈夫", "妻子", "爱人", "老公", "老婆", "母亲", "父亲", "妈妈", "爸爸", "爷爷",
                          "奶奶", "外公", "外婆", "孙子", "孙女", "哥哥", "姐姐", "弟弟", "妹妹", "我爸", "我妈",
                          "新生儿", "医生", "护士", "主治医师", "联系人", "委托人", "收件人", "收货人", "签名", "本人")
NAME_TITLES_AFTER_ZH = ("先生", "女士", "小姐", "老师", "医生", "大夫", "主任", "护士", "教授", "同学")
#: A given name never starts with these (they start the next word or mean the name is already masked: "张某").
NOT_GIVEN_FIRST = ("某的了是在说和与及或也都就又还才把被给对从到向今昨每已曾正将要想能会去来有没无不很太最因所但等个位"
                   "名岁年月日次吗呢吧医患病先女老院科术后我本外门当上下晨夜晚早午凌此该何发急社说让告嘱开觉得感咨"
                   "咳头腹胸肚腰背出入住做打看拿挂查服吃用喝睡")
#: The second given-name character is dropped when it is one of these (they start the next word: "张伟今天").
NOT_GIVEN_SECOND = NOT_GIVEN_FIRST + ("心血肝肾胃肺脚腿手眼耳鼻嘴牙皮身体电联同这那哪怎什为可没突持一两三四五六七八九"
                                      "十几半全时过着得地叫跟该应咨预复诊治疗怀孕姐哥弟妹爷奶叔姨阿高低已经刚现目多天"
                                      "反男性需问请被能会说")

#: Words that may start on a three-character name's last character ("王伟生病"): the name is then two characters.
WORDS_AFTER_NAME_ZH = ("生病", "生气", "生日", "生活", "生产", "生育", "生长", "生化", "明天", "明显", "明确", "天天",
                       "天气")

_SURNAME = r"(?:" + "|".join(SURNAMES_DOUBLE) + rf"|[{SURNAMES}])"
_GIVEN = rf"(?![{NOT_GIVEN_FIRST}])[{HAN}](?:(?![{NOT_GIVEN_SECOND}])[{HAN}])?"
_ZH_NAME_AFTER_CONTEXT = re.compile(r"(?:" + "|".join(NAME_CONTEXT_BEFORE_ZH) + r")[\s:：是为]*"
                                    + rf"({_SURNAME}{_GIVEN})")
_ZH_NAME_BEFORE_TITLE = re.compile(rf"({_SURNAME}{_GIVEN})(?=" + "|".join(NAME_TITLES_AFTER_ZH) + ")")

TITLES_EN = ("Mr", "Mrs", "Ms", "Miss", "Mx", "Dr", "Prof", "Professor", "Doctor", "Sister", "Nurse")
NAME_CONTEXT_EN = ("my name is", "name is", "name:", "i am", "i'm", "this is", "patient", "pt", "son", "daughter",
                   "wife", "husband", "mother", "father", "mom", "mum", "dad", "brother", "sister", "spouse",
                   "partner", "named", "called", "signed", "regards", "sincerely", "thanks", "contact person")
#: Capitalised words that follow a context word but are not names ("Patient Safety", "I am Chinese").
NOT_NAMES_EN = frozenset((
    "Safety", "Portal", "Services", "Service", "Care", "Information", "Records", "Record", "Education", "Advocate",
    "Relations", "Experience", "Support", "Centre", "Center", "Unit", "Room", "Number", "Chinese", "English",
    "American", "British", "Type", "Covid", "The", "A", "An", "This", "That", "He", "She", "They", "We", "It", "My",
    "His", "Her", "Our", "Your", "Their", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
    "January", "February", "March", "April", "June", "July", "August", "September", "October", "November",
    "December", "Hospital", "Clinic", "Ward", "Department", "Office", "Team", "Emergency", "Outpatient", "Inpatient",
    "Hello", "Hi", "Dear", "Thanks", "Thank", "Please", "Yes", "No", "Not", "Also", "Today", "Yesterday", "Tomorrow",
    "Doctor", "Dr", "Nurse", "Mr", "Mrs", "Ms", "Miss", "Prof", "Health", "Medical", "Medicine", "Pharmacy", "Is",
    "Was", "Has", "Had", "In", "On", "At", "And", "But", "Or", "So", "If", "When", "After", "Before", "Since",
    "Insulin", "Metformin", "Aspirin", "Ibuprofen", "Paracetamol", "Tylenol", "Advil", "Diabetic", "Asthmatic",
    "Pregnant", "Allergic", "Worried", "Sorry", "Here", "There", "What", "Why", "How", "Who", "Where", "Which",
    "ID", "MRN", "NHS", "DOB", "ICU", "ER", "GP", "Just", "Still", "Very", "Now", "Then", "Should", "Can", "Could",
    "Would", "Will", "Do", "Does", "Did", "Am", "Are", "Be", "Been", "Being", "Female", "Male", "Transgender",
    "Zone", "Day", "Week", "Month", "Year", "Group", "Name", "Names", "Mobile", "Phone", "Email", "Address",
))
_NAME_WORD = r"(?:[A-Z](?:[a-z]+|'[A-Z][a-z]+)(?:[A-Z][a-z]+)?(?:-[A-Z][a-z]+)?)"
_NAME_RUN = rf"({_NAME_WORD}(?:\s(?:[A-Z]\.\s)?{_NAME_WORD}){{0,2}})"
_EN_NAME_AFTER_TITLE = re.compile(r"\b(?:" + "|".join(TITLES_EN) + r")\.?\s+" + _NAME_RUN + r"\b")
_EN_NAME_AFTER_CONTEXT = re.compile(r"(?<![\w'])(?i:" + "|".join(re.escape(w) for w in NAME_CONTEXT_EN)
                                    + r")(?:\s+(?:is|was|named|called))?[\s,:]+" + _NAME_RUN + r"\b")


def names(text: str) -> Iterator[Finding]:
    """Chinese names (surname + one or two given characters) after a context word or before a title; English
    names after a title or a context word. Repeats of a found name elsewhere are the caller's second pass."""
    for match in _ZH_NAME_AFTER_CONTEXT.finditer(text):
        if span := _trim_zh_name(text, match.start(1), match.end(1)):
            yield Finding("name", *span)
    for match in _ZH_NAME_BEFORE_TITLE.finditer(text):
        start = match.start(1) + _verb_ends_in_surname(text, match.start(1), match.group(1))
        if span := _trim_zh_name(text, start, match.end(1)):
            yield Finding("name", *span)
    for pattern in (_EN_NAME_AFTER_TITLE, _EN_NAME_AFTER_CONTEXT):
        for match in pattern.finditer(text):
            words = match.group(1).split(" ")
            kept = 0
            for word in words:
                if word in NOT_NAMES_EN and not (kept and re.fullmatch(r"[A-Z]\.", word)):
                    break
                kept += 1
            while kept and words[kept - 1].endswith("."):  # no trailing initial
                kept -= 1
            if kept and (kept > 1 or len(words[0]) > 1):
                yield Finding("name", match.start(1), match.start(1) + len(" ".join(words[:kept])))


def _trim_zh_name(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The span of a Chinese name candidate after the checks that need the text around it, or None if it is none."""
    if end - start == 3 and text[start:start + 2] not in SURNAMES_DOUBLE and text.startswith(WORDS_AFTER_NAME_ZH,
                                                                                               end - 1):
        end -= 1
    candidate = text[start:end]
    if candidate.startswith(NOT_NAMES_ZH) or _starts_with_title(candidate):
        return None
    return start, end


def _verb_ends_in_surname(text: str, start: int, candidate: str) -> bool:
    """"感谢李明医生": with no context word the match may start on the last character of a word before the name
    (谢 and 和 are surnames too); when the rest is itself surname + given name, the rest is the name."""
    return (len(candidate) == 3 and start > 0 and "\u4e00" <= text[start - 1] <= "\u9fff"
            and candidate[:2] not in SURNAMES_DOUBLE and candidate[1] in SURNAMES)


def _starts_with_title(candidate: str) -> bool:
    """"王阿姨", "李医生": a surname and a title, not a full name."""
    for cut in (1, 2):
        if candidate[:cut] in SURNAMES_DOUBLE or (cut == 1 and candidate[0] in SURNAMES):
            if candidate[cut:].startswith(TITLES_ZH) or candidate[cut:] in ("医", "主", "大", "老", "先", "女"):
                return True
    return False


RECOGNISERS = (resident_ids, emails, record_numbers, phones, birth_dates, addresses, names)


def candidates(text: str) -> list[Finding]:
    """Every recogniser's spans, overlapping, none inside a placeholder."""
    masked = [(m.start(), m.end()) for m in PLACEHOLDER.finditer(text)]
    found = []
    for recogniser in RECOGNISERS:
        for finding in recogniser(text):
            if finding.end > finding.start and not any(s < finding.end and finding.start < e for s, e in masked):
                found.append(finding)
    return found
