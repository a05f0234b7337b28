"""Write the labelled synthetic validation set of the de-identifier (``governance/deid/validation/synthetic.jsonl``).

    python scripts/make_deid_validation.py [--seed 20261207] [--out governance/deid/validation/synthetic.jsonl]

Deterministic (one ``random.Random(seed)``): running it again rewrites the file byte for byte. 200 Chinese and 200
English queries of the kind patients and clinicians type into a hospital LLM, written as sentences with slots. Each
slot is filled with a fake identifier (resident IDs with valid check digits from random region codes and birth dates,
phone numbers from drama/test ranges, made-up streets, names from surname and given-name lists) and its span is
labelled. Some sentences hold no identifier (precision), some the same person twice, and some are deliberately hard
for rules (a name with no context word, a village address, a phone number spaced oddly, a two-digit birth year), so
the measured recall is honest rather than 100% by construction. Nothing here is derived from the rules' regexes.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "governance" / "deid" / "validation" / "synthetic.jsonl"
SEED = 20261207
PER_LANGUAGE = 200

# ------------------------------------------------------------------------------------------------ Chinese sentences

ZH_TEMPLATES = (
    "我是患者{name}，身份证号{id}，最近三天一直头痛，吃布洛芬可以吗？",
    "医生您好，我叫{name}，今年{age}岁，空腹血糖8.6，二甲双胍需要加量吗？",
    "{name}先生，您的复诊时间是{visit}上午，请携带就诊卡按时到心内科门诊。",
    "患者{name}，男，{age}岁，出生日期{dob}，因胸闷2天入院，住院号{mrn}。",
    "我母亲{name}今天出院，出院后降压药怎么吃？有问题可以打我电话{mobile}。",
    "请把我的体检报告发到邮箱{email}，谢谢。",
    "我家住{addr}，离医院比较远，可以线上复诊吗？",
    "联系电话：{landline}，地址：{addr}。想预约下周的甲状腺B超。",
    "病历号：{mrn}，患者{name}，主诉咳嗽伴发热一周，胸片提示右下肺炎。",
    "我女儿{name}生于{dob}，现在发烧38.5度，可以吃对乙酰氨基酚吗？",
    "患者{name}昨天做了胃镜，{same}的家属想知道病理结果什么时候出来。",
    "{bare}最近总是失眠，医生开了右佐匹克隆，能长期吃吗？",
    "快递请送到{addr_short}，药品需要冷藏。",
    "有事打{mobile_odd}找我，我白天都在。",
    "身份证{id15}，医保卡号{mrn}，请帮我查一下报销进度。",
    "{addr_hard}的{bare}阿姨血压一直偏高，想咨询换药。",
    "{name}女士您好，您{visit}的核磁共振检查结果已出，请登录APP查看。",
    "我是{name}的丈夫，她的身份证号是{id_bad}，帮她挂个产科号。",
    "家属{name}，手机{mobile}，患者{name2}今日转入ICU，请及时联系。",
    "出生日期：{dob}，姓名：{name}，性别：女，过敏史：青霉素。",
    "我{dob_hard}出生的，今年体检发现血脂高，需要吃他汀吗？",
    "您好，我是{name}，在贵院做过阑尾手术，病案号{mrn}，想复印病历。",
    "儿子{name}今年{age}岁，反复咳嗽一个月，需要做肺功能吗？",
    "请联系{name}主任，电话{landline}，邮箱{email}。",
    "患者{name}，身份证号{id}，现住址{addr}，联系电话{mobile}。",
    "{name}医生说我的甲状腺结节是良性的，半年复查一次就行，对吗？",
    "我叫{name}，麻烦把就诊卡上的名字改回{same}，门诊号{mrn}。",
    "身份证{id}的患者预约了{visit}的胃肠镜，请确认。",
    "邮寄地址：{addr}，收件人{name}，电话{mobile}。",
    "我爸{bare}住院期间一直是{name2}医生负责，出院小结能发到{email}吗？",
    "我的老身份证号码是{id15}，现在还能挂号吗？",
    "新生儿{bare}，{dob}出生，黄疸值偏高，需要照蓝光吗？",
    # no identifier: precision cases, including words that look like names, dates and places
    "患者高血压十年，近期血压波动在150/95左右，氨氯地平5mg每日一次是否需要调整？",
    "{visit}复诊，复查血常规和肝功能，需要空腹吗？",
    "服药3天后皮疹消退了，还需要继续吃氯雷他定吗？",
    "心内科门诊在门诊楼3层，周一至周五上午开放，需要提前预约吗？",
    "我父亲高血压、糖尿病多年，最近脚肿，是不是肾出问题了？",
    "宝宝出生时体重3.2公斤，现在6个月，辅食怎么添加？",
    "请问北京协和医院的挂号流程是什么？周末有门诊吗？",
    "术后第5天，伤口有点渗液，体温37.8度，需要回医院吗？",
    "我是糖尿病患者，胰岛素放冰箱冷藏还是常温？",
    "患者于2023年5月出现咳嗽，当地医院诊断为支气管炎，医生建议做胸部CT。",
    "阿莫西林和头孢能一起吃吗？我对青霉素过敏，以前吃过会起疹子。",
    "母亲于去年做了心脏支架，现在每天吃阿司匹林和氯吡格雷，牙龈出血怎么办？",
    "请问张医生周三下午出诊吗？我是王主任的老病人了。",
    "我是高中生，最近压力大，晚上总失眠，可以吃褪黑素吗？",
    "医生建议我每天走路30分钟，一个月后复查血糖。",
    "药品批号20230815，有效期至2026年3月，还能吃吗？",
    "患者平素体健，否认肝炎结核病史，否认药物过敏史。",
    "我住在医院附近，走路十分钟就到，能不能晚上来拿药？",
    "患者王某，男，58岁，已签署知情同意书，拟明日手术。",
    "医院地址在哪里？挂号电话是多少？",
)

ZH_SURNAMES = ("王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何",
               "林", "罗", "高", "郑", "梁", "谢", "宋", "唐", "韩", "冯", "邓", "曹", "彭", "曾", "田", "董", "潘",
               "蒋", "蔡", "余", "杜", "叶", "程", "苏", "魏", "吕", "丁", "沈", "姚", "卢", "欧阳", "司马", "诸葛")
ZH_GIVEN = ("伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
            "超", "秀兰", "霞", "平", "刚", "桂英", "建华", "志强", "晓明", "丽娟", "海燕", "国庆", "文博", "子涵",
            "欣怡", "浩然", "宇轩", "雨桐", "思远", "嘉怡", "俊杰", "佳琪", "婷婷", "春生", "玉兰", "德胜", "一鸣")
ZH_PLACES = (("浙江省", "杭州市", "西湖区"), ("广东省", "广州市", "天河区"), ("四川省", "成都市", "武侯区"),
             ("江苏省", "南京市", "鼓楼区"), ("湖北省", "武汉市", "江汉区"), ("陕西省", "西安市", "雁塔区"),
             ("广东省", "深圳市", "南山区"), ("", "北京市", "朝阳区"), ("", "上海市", "徐汇区"),
             ("", "天津市", "和平区"), ("", "重庆市", "渝中区"), ("山东省", "青岛市", "市南区"))
ZH_STREETS = ("建国路", "文三路", "人民路", "解放路", "中山路", "长江路", "和平街", "幸福大街", "光明巷", "青年路",
              "学院路", "滨江大道", "桃源路", "东风路", "红星路")
ZH_ESTATES = ("阳光花园", "翠苑", "金桂小区", "锦绣家园", "绿洲新村", "枫林公寓", "怡景花园小区")
ZH_VILLAGES = ("李家", "王庄", "石桥", "柳树沟", "杏花")
ID_REGIONS = ("110101", "110105", "310104", "310115", "440106", "440305", "320102", "510107", "330106", "420103",
              "370202", "610113", "500103", "120101", "210102", "350203", "430104", "530102")
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
MOBILE_PREFIXES = ("130", "131", "132", "135", "136", "137", "138", "139", "150", "151", "152", "158", "159", "176",
                   "177", "180", "185", "186", "187", "188", "189", "199")
ZH_NUMERALS = "〇一二三四五六七八九"

# ------------------------------------------------------------------------------------------------ English sentences

EN_TEMPLATES = (
    "Hi, my name is {name} and my date of birth is {dob}. Can I take ibuprofen with lisinopril?",
    "Patient {name}, MRN {mrn}, admitted with chest pain; troponin pending.",
    "Please send my discharge summary to {email}. Thanks.",
    "I live at {addr} and can't get to the clinic. Can I do a video appointment?",
    "Call me on {phone} if the biopsy results come back before Friday.",
    "Dr. {last} told me to stop metformin before the CT scan. Is that right?",
    "My daughter {first} was born on {dob} and has had a fever of 39C since yesterday.",
    "Mrs {last} (DOB {dob}) missed her appointment on {visit}; please rebook.",
    "{bare} has been feeling dizzy after starting amlodipine. Should the dose be lowered?",
    "This is {name}, my hospital number is {mrn}, I need a repeat prescription for levothyroxine.",
    "Patient {name} was discharged today. {same_last} should continue apixaban for 3 months.",
    "Text {phone_odd} after 6pm if the pharmacy has the inhaler.",
    "Address: {addr}. Phone: {phone}. Reason for referral: recurrent UTIs.",
    "NHS number {nhs}, {name}, referred by GP for suspected asthma.",
    "Hello, I'm {first}. My husband {name2} has type 2 diabetes and his sugars are high in the morning.",
    "The patient, {name}, born {dob_hard}, reports chest tightness on exertion.",
    "You can email me at {email_hard} with the lab results.",
    "Deliver the CPAP machine to {addr_hard} please.",
    "my name is {name_lower} and i need my test results from last week",
    "Ms {last} called from {phone} about her INR result of 3.4.",
    "Encounter no. {mrn}: {name} seen in ED for ankle sprain, X-ray negative.",
    "Prof. {last} asked me to email {email} with my blood sugar readings.",
    "My wife {name2} and I both need flu shots. Our address is {addr}.",
    "Could you confirm the appointment for {bare} on {visit}? Her phone is {phone}.",
    "Medical record number: {mrn}. Date of birth: {dob}. Allergies: penicillin.",
    "I am {name}, 67, and my INR has been unstable since I started amiodarone.",
    "{bare} ({mrn}) needs a follow-up with Dr {last2} in two weeks.",
    "Mr. {name} lives at {addr}; his son {first2} is the main carer.",
    "Please update my phone number to {phone} and my email to {email}.",
    "My son {first} ({dob}) has a peanut allergy. Is the flu vaccine safe for him?",
    "Hi Dr {last}, this is {first2}'s mother. She still has a rash after the amoxicillin.",
    "Patient ID: {mrn}. Patient {name} prefers to be called {same_first}; he has stopped taking his statin.",
    # no identifier: precision cases, including capitalised words after context words and dates of visits
    "What is the maximum daily dose of paracetamol for an adult?",
    "I was seen on {visit} for a sprained ankle; how long should I use crutches?",
    "The Patient Safety team asked us to report all falls within 24 hours.",
    "Is it safe to take 500 mg of amoxicillin three times a day for 7 days?",
    "My blood pressure was 150/95 this morning and 138/88 in the evening.",
    "Can Dr visits be done by video for follow-up of hypertension?",
    "After 3 days of antibiotics the fever is gone. Should I finish the course?",
    "HbA1c was 7.2% in March 2024; is that well controlled?",
    "Please explain the difference between type 1 and type 2 diabetes.",
    "The Emergency Department at St Mary's is very busy tonight, expect a 4 hour wait.",
    "I am Diabetic and my sugar was 11.2 mmol/L after lunch. What should I do?",
    "The patient Monday morning list has 12 cases, starting at 08:30 in theatre 3.",
    "I read on Dr. Google that Hashimoto's thyroiditis is hereditary. Is that true?",
    "Our Patient Experience team will call you back within 2 working days.",
    "Take 1 tablet at 8 am and 8 pm, and call 911 if the chest pain lasts more than 5 minutes.",
    "Room 12 on Ward 5 has a broken call bell; please send maintenance.",
    "Born in 1985, I have had asthma since childhood. Can I switch to a combination inhaler?",
    "My GP said I should see a specialist at the Mayo Clinic about my Crohn's disease.",
    "Patient Information leaflets for warfarin are in the waiting room on Level 2.",
)

EN_FIRST = ("James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
            "William", "Susan", "Sarah", "Emily", "Oliver", "Amelia", "George", "Olivia", "Harry", "Isla", "Thomas",
            "Grace", "Daniel", "Chloe", "Priya", "Mohammed", "Aisha", "Connor", "Fatima", "Lucas", "Hannah", "Ethan")
EN_LAST = ("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Wilson", "Taylor",
           "Anderson", "Thomas", "Moore", "Jackson", "Martin", "Lee", "Thompson", "White", "Harris", "Clark", "Lewis",
           "Walker", "Hall", "Young", "O'Brien", "McDonald", "Patel", "Nguyen", "Kowalski", "Okafor", "Fitzgerald")
EN_STREETS = ("Oak", "Maple", "Cedar", "Elm", "Pine", "Washington", "Lincoln", "Jefferson", "Lake", "Sunset",
              "Highland", "Meadow Brook", "Baker", "Church", "Station", "Victoria", "Mill")
US_TYPES = ("Street", "St", "Avenue", "Ave", "Road", "Rd", "Drive", "Lane", "Boulevard", "Court")
UK_TYPES = ("Road", "Street", "Lane", "Close", "Crescent", "Gardens", "Terrace")
US_CITIES = (("Springfield", "IL"), ("Riverside", "CA"), ("Fairview", "TX"), ("Madison", "WI"), ("Salem", "OR"))
UK_CITIES = ("Leeds", "Bristol", "Manchester", "York", "Cardiff", "London")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")

#: Which label each slot gets; slots not here ({age}, {visit}) are filler and are not labelled.
SLOT_TYPES = {
    "name": "name", "name2": "name", "same": "name", "bare": "name", "first": "name", "first2": "name",
    "last": "name", "last2": "name", "same_last": "name", "same_first": "name", "name_lower": "name",
    "id": "resident_id", "id_bad": "resident_id", "id15": "resident_id",
    "mobile": "phone", "mobile_odd": "phone", "landline": "phone", "phone": "phone", "phone_odd": "phone",
    "email": "email", "email_hard": "email", "mrn": "record_number", "nhs": "record_number",
    "dob": "birth_date", "dob_hard": "birth_date",
    "addr": "address", "addr_short": "address", "addr_hard": "address",
}


def digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(count))


def check_character(first17: str) -> str:
    """GB 11643-1999 check character: ISO 7064 MOD 11-2 over the first 17 digits."""
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def birth_date(rng: random.Random, first: int = 1940, last: int = 2015) -> tuple[int, int, int]:
    return rng.randint(first, last), rng.randint(1, 12), rng.randint(1, 28)


def resident_id(rng: random.Random, valid: bool = True) -> str:
    year, month, day = birth_date(rng)
    first17 = f"{rng.choice(ID_REGIONS)}{year:04d}{month:02d}{day:02d}{digits(rng, 3)}"
    check = check_character(first17)
    if not valid:
        check = rng.choice([c for c in "0123456789X" if c != check])
    return first17 + check


def zh_name(rng: random.Random) -> str:
    return rng.choice(ZH_SURNAMES) + rng.choice(ZH_GIVEN)


def zh_date(rng: random.Random, year: int, month: int, day: int) -> str:
    style = rng.randrange(5)
    return (f"{year}年{month}月{day}日", f"{year}-{month:02d}-{day:02d}", f"{year}/{month}/{day}",
            f"{year}.{month:02d}.{day:02d}", f"{year}年{month:02d}月{day:02d}日")[style]


def en_date(rng: random.Random, year: int, month: int, day: int) -> str:
    name = MONTHS[month - 1]
    style = rng.randrange(6)
    return (f"{day} {name} {year}", f"{name} {day}, {year}", f"{month:02d}/{day:02d}/{year}",
            f"{year}-{month:02d}-{day:02d}", f"{day}{ordinal(day)} {name} {year}", f"{name[:3]} {day} {year}")[style]


def ordinal(day: int) -> str:
    return "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def mobile(rng: random.Random) -> str:
    number = rng.choice(MOBILE_PREFIXES) + digits(rng, 8)
    style = rng.randrange(10)
    if style < 6:
        return number
    grouped = f"{number[:3]} {number[3:7]} {number[7:]}"
    return (grouped, grouped.replace(" ", "-"), "+86 " + number, "+86 " + grouped)[style - 6]


def zh_address(rng: random.Random) -> str:
    province, city, district = rng.choice(ZH_PLACES)
    street, number = rng.choice(ZH_STREETS), rng.randint(1, 399)
    style = rng.randrange(4)
    if style == 0:
        return f"{province}{city}{district}{street}{number}号"
    if style == 1:
        return (f"{city}{district}{street}{number}号{rng.randint(1, 20)}号楼{rng.randint(1, 6)}单元"
                f"{rng.randint(1, 30)}{rng.randint(1, 4):02d}室")
    if style == 2:
        room = f"{rng.randint(1, 30)}{rng.randint(1, 4):02d}"
        return f"{city}{district}{rng.choice(ZH_ESTATES)}{rng.randint(1, 30)}栋{room}"
    return f"{district}{street}{number}号"


def en_address(rng: random.Random) -> str:
    number, street = rng.randint(1, 2400), rng.choice(EN_STREETS)
    style = rng.randrange(4)
    if style == 0:
        city, state = rng.choice(US_CITIES)
        return f"{number} {street} {rng.choice(US_TYPES)}, {city}, {state} {rng.randint(10000, 99999)}"
    if style == 1:
        return f"{number} {street} {rng.choice(US_TYPES)}, Apt {rng.randint(1, 40)}"
    if style == 2:
        postcode = (f"{rng.choice(['LS', 'BS', 'M', 'YO', 'CF', 'NW'])}{rng.randint(1, 20)} "
                    f"{rng.randint(1, 9)}{rng.choice('ABDEFGHJ')}{rng.choice('LNPQRSTUWXYZ')}")
        return f"{number} {street} {rng.choice(UK_TYPES)}, {rng.choice(UK_CITIES)} {postcode}"
    return f"Flat {rng.randint(1, 12)}, {number} {street} {rng.choice(UK_TYPES)}"


def en_phone(rng: random.Random) -> str:
    line = f"01{digits(rng, 2)}"  # 555-0100 to 555-0199 are reserved for fiction
    style = rng.randrange(5)
    return (f"(555) {line[:3]}-{line[3]}{digits(rng, 3)}", f"+1 555 {digits(rng, 3)} {digits(rng, 4)}",
            f"555-{digits(rng, 3)}-{digits(rng, 4)}", f"+44 20 7946 0{digits(rng, 3)}",
            f"07700 900{digits(rng, 3)}")[style]


def slot_value(slot: str, lang: str, rng: random.Random, people: dict[str, str]) -> str:
    """A fake identifier (or filler) for one slot; ``people`` remembers who was named, for {same} slots."""
    if slot in ("name", "name2", "bare") and lang == "zh":
        people[slot] = zh_name(rng)
        return people[slot]
    if slot in ("name", "name2", "bare", "name_lower"):
        first, last = rng.choice(EN_FIRST), rng.choice(EN_LAST)
        middle = f" {rng.choice('ABCDEFGHJKLMRST')}." if rng.random() < 0.15 else ""
        people[slot], people[slot + "_first"], people[slot + "_last"] = f"{first}{middle} {last}", first, last
        return people[slot].lower() if slot == "name_lower" else people[slot]
    if slot in ("first", "first2"):
        return rng.choice(EN_FIRST)
    if slot in ("last", "last2"):
        return rng.choice(EN_LAST)
    if slot == "same":
        return people["name"]
    if slot in ("same_last", "same_first"):
        return people[f"name_{slot[5:]}"] if "name" in people else rng.choice(EN_LAST)
    if slot in ("id", "id_bad"):
        number = resident_id(rng, valid=slot == "id")
        return number if rng.random() < 0.85 or slot == "id_bad" else f"{number[:6]} {number[6:14]} {number[14:]}"
    if slot == "id15":
        year, month, day = birth_date(rng, 1930, 1999)
        return f"{rng.choice(ID_REGIONS)}{year % 100:02d}{month:02d}{day:02d}{digits(rng, 3)}"
    if slot == "mobile":
        return mobile(rng)
    if slot == "mobile_odd":
        number = rng.choice(MOBILE_PREFIXES) + digits(rng, 8)
        return rng.choice((f"{number[:2]} {number[2:5]} {number[5:8]} {number[8:]}", f"{number[:4]}—{number[4:]}",
                           f"{number[:3]}.{number[3:7]}.{number[7:]}"))
    if slot == "landline":
        code = rng.choice(("010", "021", "020", "0755", "0571", "028"))
        number = str(rng.randint(2, 8)) + digits(rng, 7)
        return rng.choice((f"{code}-{number}", f"({code}) {number}", f"{code} {number[:4]} {number[4:]}"))
    if slot == "phone":
        return en_phone(rng)
    if slot == "phone_odd":
        return f"555 01{digits(rng, 1)} {digits(rng, 4)}"
    if slot == "email":
        user = (rng.choice(("zhang.wei", "lina", "wangfang88", "liu_yang", "chenjing2001")) if lang == "zh" else
                rng.choice(("sarah.connor", "jsmith1975", "m.patel", "olivia_b", "harry.k")))
        return f"{user}{rng.randint(1, 99)}@{rng.choice(('example.com', 'example.org', 'mail.example.cn'))}"
    if slot == "email_hard":
        return f"{rng.choice(EN_FIRST).lower()} at example dot com"
    if slot == "mrn":
        style = rng.randrange(4)
        if lang == "zh":
            return (f"ZY{digits(rng, 8)}", f"MZ{digits(rng, 8)}", digits(rng, 10), f"2023{digits(rng, 6)}")[style]
        return (digits(rng, 8), f"A{digits(rng, 7)}", f"MRN-{digits(rng, 6)}", f"E{digits(rng, 6)}-01")[style]
    if slot == "nhs":
        return f"{digits(rng, 3)} {digits(rng, 3)} {digits(rng, 4)}"
    if slot == "dob":
        return (zh_date if lang == "zh" else en_date)(rng, *birth_date(rng))
    if slot == "dob_hard":
        year, month, day = birth_date(rng, 1950, 1999)
        if lang == "zh":
            month_name = "一二三四五六七八九十"[month - 1] if month <= 10 else "十" + "一二"[month - 11]
            return "".join(ZH_NUMERALS[int(d)] for d in f"{year % 100:02d}") + f"年{month_name}月"
        return f"{month}/{day}/{year % 100:02d}"
    if slot == "addr":
        return (zh_address if lang == "zh" else en_address)(rng)
    if slot == "addr_short":
        room = f"{rng.randint(1, 30)}{rng.randint(1, 4):02d}"
        return f"{rng.choice(ZH_ESTATES)}{rng.randint(1, 30)}栋{rng.randint(1, 6)}单元{room}"
    if slot == "addr_hard":
        if lang == "zh":
            return f"{rng.choice(ZH_VILLAGES)}村{rng.choice('一二三四五六')}组"
        return f"{rng.randint(1, 90)} {rng.choice(EN_STREETS)} Hollow"
    if slot == "age":
        return str(rng.randint(3, 88))
    if slot == "visit":
        year, month, day = rng.randint(2023, 2026), rng.randint(1, 12), rng.randint(1, 28)
        return (zh_date if lang == "zh" else en_date)(rng, year, month, day)
    raise KeyError(slot)


def fill(template: str, lang: str, rng: random.Random) -> tuple[str, list[dict]]:
    """The sentence with its slots filled, and the labelled span of every identifier slot."""
    text, spans, people, cursor = "", [], {}, 0
    for match in re.finditer(r"\{(\w+)\}", template):
        text += template[cursor:match.start()]
        value = slot_value(match.group(1), lang, rng, people)
        if match.group(1) in SLOT_TYPES:
            spans.append({"type": SLOT_TYPES[match.group(1)], "start": len(text), "end": len(text) + len(value)})
        text += value
        cursor = match.end()
    return text + template[cursor:], spans


def records(seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for lang, templates in (("zh", ZH_TEMPLATES), ("en", EN_TEMPLATES)):
        for number in range(PER_LANGUAGE):
            text, spans = fill(templates[number % len(templates)], lang, rng)
            rows.append({"id": f"{lang}-{number + 1:04d}", "lang": lang, "text": text, "spans": spans})
    return rows


def write(path: Path, seed: int = SEED) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row, ensure_ascii=False) for row in records(seed)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=OUT)
    arguments = parser.parse_args()
    write(arguments.out, arguments.seed)


if __name__ == "__main__":
    main()
