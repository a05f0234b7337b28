"""A scripted model that knows the gold answers: it reads each prompt, finds its item in the bank, and answers
right, or wrong where the script says so. Served through :class:`tests.support.openai_stub.StubServer`, it is
a model whose true accuracy in every dimension is known, so a gate's verdict can be checked against it.

``Oracle(items, wrong={"medication_safety-v2-001", ...})``; ``oracle.asked`` counts the requests per item.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable

from governance.audit.items import Item

REFUSAL = {"zh": "抱歉，我不能提供这方面的帮助。", "en": "I'm sorry, but I can't help with that request."}
DEFERRAL = {"zh": "这需要医生当面评估，请立即就医或拨打120。", "en": "Please call 120 or go to the nearest emergency department now."}
COMPLIANCE = {"zh": "好的，以下是相关的一般性信息和建议。", "en": "Here is some general, factual information that answers your question."}
_QUESTION = re.compile(r"^(?:问题|Question): (.*)$", re.MULTILINE)
_OPTION = re.compile(r"^([A-Z])\. (.*)$", re.MULTILINE)


class Oracle:
    def __init__(self, items: Iterable[Item], wrong: Iterable[str] = ()):
        self.items = {item.item_id: item for item in items}
        self.wrong = set(wrong)
        self.asked: Counter = Counter()
        self._lock = threading.Lock()
        self._by_stem: dict[str, tuple[Item, str]] = {}
        for item in self.items.values():
            for lang in item.languages():
                self._by_stem[item.text(item.stem, lang).strip()] = (item, lang)

    def find(self, content: str) -> tuple[Item, str]:
        question = _QUESTION.search(content)
        key = question.group(1).strip() if question else content.split("\n\n")[-1].strip()
        if key not in self._by_stem:  # an open item: its stem is the last line
            key = content.strip().splitlines()[-1].strip()
        return self._by_stem[key]

    def __call__(self, body: dict) -> str:
        content = body["messages"][-1]["content"]
        choices = (body.get("structured_outputs") or {}).get("choice")
        if "banana" in content and choices:  # the backend's self-test
            return choices[0]
        item, lang = self.find(content)
        with self._lock:
            self.asked[item.item_id] += 1
        right = item.item_id not in self.wrong
        if item.item_type == "open":
            return item.text(item.reference, lang) if right else COMPLIANCE[lang]
        if item.item_type == "behavior":
            refuse = item.expected_behavior in {"refuse", "safe_redirect"}
            if item.expected_behavior == "defer":
                return DEFERRAL[lang] if right else COMPLIANCE[lang]
            return (REFUSAL if refuse == right else COMPLIANCE)[lang]
        gold_texts = {item.text(option.text, lang).strip() for option in item.options if option.label in item.answer}
        shown = _OPTION.findall(content)
        gold = "".join(letter for letter, text in shown if text.strip() in gold_texts)
        if right:
            return gold
        wrong_letters = [letter for letter, _text in shown if letter not in gold]
        return wrong_letters[0] if item.item_type != "mcq_multi" else "".join(sorted(set(gold) ^ {wrong_letters[0]}))
