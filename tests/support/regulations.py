"""What the tests of the rule files share: the paths and example descriptors with one field changed (the review's
single-defect probes). The shipped rule set and checklist items are the fixtures ``ruleset`` and ``checklist_items``
of ``tests/conftest.py``."""

from __future__ import annotations

import re
from pathlib import Path

from governance.classification.descriptor import load_descriptor

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "examples"
CJK = re.compile(r"[\u4e00-\u9fff]")


def descriptor(example: str, **changes):
    """A shipped example with ``changes`` applied: a probe that differs in one respect."""
    return load_descriptor(EXAMPLES / f"{example}.yaml").model_copy(update=changes)
