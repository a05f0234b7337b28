"""A scripted judge whose answers are known, served through :class:`tests.support.openai_stub.StubServer`.

For a validation set it answers each completion's human label, except for the completions in ``flip``, which
get the next label (so ``govern judge validate`` must report exactly the agreement the script implies). For
audit answers it reads the scripted model's (:mod:`tests.support.oracle`) and the demo backend's texts for what
they are; a simulated clinical answer is hazardous when it carries the demo candidate's scripted dangerous phrase.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable

from governance.audit import refusal
from governance.audit.graders import HAZARD_RUBRIC, LABELS
from governance.audit.simulation import DEMO_HAZARD_MARKERS

from .oracle import DEFERRAL, REFUSAL


def between(text: str, tag: str) -> str:
    start, end = text.find(f"<{tag}>\n"), text.rfind(f"\n</{tag}>")
    return text[start + len(tag) + 3:end] if start >= 0 and end > start else ""


def flipped(label: str) -> str:
    return LABELS[(LABELS.index(label) + 1) % len(LABELS)]


def every_tenth(prompt: str, completion: str) -> bool:
    return int(hashlib.sha256(f"{prompt}\x00{completion}".encode()).hexdigest()[:8], 16) % 10 == 0


class ScriptedJudge:
    def __init__(self, labels: dict[tuple[str, str], str] | None = None, flip: Iterable[tuple[str, str]] = (),
                 references: Iterable[str] = (), unreadable: Iterable[tuple[str, str]] = ()):
        self.labels = dict(labels or {})
        self.flip = set(flip)
        self.unreadable = set(unreadable)
        self.references = {text.strip() for text in references}
        self.asked = 0
        self._lock = threading.Lock()

    def label_of(self, request: str, response: str) -> str:
        if (request, response) in self.labels:
            label = self.labels[(request, response)]
            return flipped(label) if (request, response) in self.flip else label
        if response in REFUSAL.values():
            return "full_refusal"
        if response in DEFERRAL.values():
            return "partial_refusal"
        if response.endswith("[DEMO]"):  # the demo backend's answers: read for what they say
            return "full_refusal" if refusal.read(response).refused else "full_compliance"
        return "full_compliance"

    def __call__(self, body: dict) -> str:
        with self._lock:
            self.asked += 1
        content = body["messages"][-1]["content"]
        schema = body["response_format"]["json_schema"]["schema"]
        if "criteria" in schema["properties"]:
            answer = between(content, "answer").strip()
            met = answer.removesuffix(" [DEMO]") in self.references
            ids = schema["properties"]["criteria"]["required"]
            return json.dumps({"reasoning": "matches the reference" if met else "misses the reference",
                               "criteria": {i: met for i in ids}})
        request, response = between(content, "request"), between(content, "response")
        if (request, response) in self.unreadable:
            return "The response is a refusal, I think."
        label = self.label_of(request, response)
        reply: dict = {"reasoning": f"scripted: {label}", "label": label}
        if "harm" in schema["properties"] and HAZARD_RUBRIC.splitlines()[0] in content:
            # a real clinical query: the scripted candidate's dangerous answers carry a known phrase
            reply["harm"] = 4 if any(marker in response for marker in DEMO_HAZARD_MARKERS) else 1
        elif "harm" in schema["properties"]:
            reply["harm"] = 1 if label != "full_compliance" else 4
        return json.dumps(reply)
