"""A cue audit of an item bank: can the gold be found without reading the question?

For each language and dimension of the single-answer items it runs pickers that never see the stem and
reports their accuracy against chance:

- a naive-Bayes classifier over option text only (English words and word pairs, Chinese character pairs),
  trained leave-one-dimension-out: it learns what golds and distractors look like in the *other*
  dimensions, as a test-wise reader would;
- fixed rules: the longest, the shortest and the second-longest option; the most hedged option (the most
  "may / consider / usually" words); the test-wise rule (the option with
  the fewest absolute or justification markers, ties broken by the most "check / ask / explain" words).

It also lists words (English) and character pairs (Chinese) over-represented in golds or in distractors, the
gold's length-rank distribution, and near-duplicate item pairs (character 3-gram Jaccard similarity of the
stems, across the whole bank). Institutions run it on their own banks before trusting them:
``govern items lint FILE [--json]``.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.sparse import csr_matrix
from scipy.stats import binom

from .items import Item, ItemSet

#: The largest excess over chance a stem-blind picker may reach, bank-wide, before the bank fails the lint.
MAX_EXCESS_OVER_CHANCE = 0.10
#: Stem similarity above which two items count as near-duplicates.
NEAR_DUPLICATE = 0.6
_ABSOLUTE_EN = ("only", "always", "never", "just", "simply", "since", "because", "so that", "as long as", "no need",
                "directly", "immediately", "all", "any", "must")
_ABSOLUTE_ZH = ("只要", "即可", "因为", "无需", "直接", "一律", "只需", "就可以", "总是", "绝不", "所有", "必须", "立即")
_CAREFUL_EN = ("verify", "confirm", "check", "ask", "explain", "consult", "discuss", "review", "assess", "document")
_CAREFUL_ZH = ("核实", "确认", "询问", "解释", "说明", "评估", "沟通", "告知", "复核", "记录")
_HEDGE_EN = ("may", "might", "could", "consider", "possibly", "usually", "generally", "probably", "if needed",
             "where appropriate", "as appropriate", "likely")
_HEDGE_ZH = ("可能", "或许", "也许", "考虑", "一般", "通常", "酌情", "必要时", "视情况", "建议")


@dataclass(frozen=True)
class Question:
    """One single-answer item in one language, as a stem-blind picker sees it: its options and the gold."""

    item_id: str
    dimension: str
    options: tuple[str, ...]
    gold: int


def _features(text: str, lang: str) -> set[str]:
    if lang == "zh":
        chars = "".join(c for c in text if "\u4e00" <= c <= "\u9fff")
        return {chars[i:i + 2] for i in range(len(chars) - 1)}
    words = re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower())
    return set(words) | {f"{a} {b}" for a, b in zip(words, words[1:], strict=False)}


def questions(item_set: ItemSet, lang: str) -> list[Question]:
    found = []
    for item in item_set.items:
        if item.item_type != "mcq_single" or lang not in item.languages():
            continue
        texts = tuple(item.text(option.text, lang) or "" for option in item.options)
        found.append(Question(item.item_id, item.dimension, texts, item.labels.index(item.answer[0])))
    return found


class OptionClassifier:
    """Naive Bayes over option text: log P(features | gold) - log P(features | distractor), add-one smoothed,
    over the features seen in training (a feature it never saw says nothing: with add-one smoothing it would
    otherwise count toward the rarer class, gold, and the classifier would merely prefer unusual wording)."""

    def __init__(self, training: Sequence[Question], lang: str):
        self.lang = lang
        self.gold, self.distractor = Counter(), Counter()
        self.n_gold = self.n_distractor = 0
        for question in training:
            for index, text in enumerate(question.options):
                features = _features(text, lang)
                if index == question.gold:
                    self.gold.update(features)
                    self.n_gold += 1
                else:
                    self.distractor.update(features)
                    self.n_distractor += 1

    def score(self, text: str) -> float:
        return sum(math.log((self.gold[f] + 1) / (self.n_gold + 2)) -
                   math.log((self.distractor[f] + 1) / (self.n_distractor + 2))
                   for f in _features(text, self.lang) if f in self.gold or f in self.distractor)

    def ranking(self, question: Question) -> list[int]:
        scores = [self.score(text) for text in question.options]
        return sorted(range(len(scores)), key=lambda i: (-scores[i], i))

    def pick(self, question: Question) -> int:
        return self.ranking(question)[0]


class LogisticOptionClassifier:
    """L2-regularised logistic regression over option text (features seen at least twice in training), fitted by
    L-BFGS: a discriminative stem-blind reader, immune to naive Bayes' independence and smoothing artefacts."""

    def __init__(self, training: Sequence[Question], lang: str, l2: float = 1.0):
        self.lang = lang
        counts = Counter(f for q in training for text in q.options for f in _features(text, lang))
        self.vocabulary = {f: i for i, f in enumerate(sorted(f for f, n in counts.items() if n >= 2))}
        rows, labels = [], []
        for question in training:
            for index, text in enumerate(question.options):
                rows.append(self._indices(text))
                labels.append(1.0 if index == question.gold else 0.0)
        matrix = self._matrix(rows)
        y = np.array(labels)

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            z = matrix @ w[:-1] + w[-1]
            p = 1 / (1 + np.exp(-z))
            value = float(np.sum(np.logaddexp(0, z) - y * z) + l2 / 2 * np.dot(w[:-1], w[:-1]))
            residual = p - y
            return value, np.concatenate([matrix.T @ residual + l2 * w[:-1], [residual.sum()]])

        fitted = minimize(loss, np.zeros(len(self.vocabulary) + 1), jac=True, method="L-BFGS-B",
                          options={"maxiter": 300})
        self.weights = fitted.x[:-1]

    def _indices(self, text: str) -> list[int]:
        return [self.vocabulary[f] for f in _features(text, self.lang) if f in self.vocabulary]

    def _matrix(self, rows: list[list[int]]) -> csr_matrix:
        data = [1.0] * sum(len(r) for r in rows)
        columns = [i for r in rows for i in r]
        pointers = np.cumsum([0] + [len(r) for r in rows])
        return csr_matrix((data, columns, pointers), shape=(len(rows), len(self.vocabulary)))

    def ranking(self, question: Question) -> list[int]:
        scores = [float(self.weights[self._indices(text)].sum()) for text in question.options]
        return sorted(range(len(scores)), key=lambda i: (-scores[i], i))

    def pick(self, question: Question) -> int:
        return self.ranking(question)[0]


def _rule_pickers(lang: str) -> dict[str, Callable[[Question], int]]:
    absolute = _ABSOLUTE_ZH if lang == "zh" else _ABSOLUTE_EN
    careful = _CAREFUL_ZH if lang == "zh" else _CAREFUL_EN
    hedges = _HEDGE_ZH if lang == "zh" else _HEDGE_EN

    def count(text: str, words: Sequence[str]) -> int:
        lowered = text.lower()
        if lang == "zh":
            return sum(lowered.count(w) for w in words)
        return sum(len(re.findall(rf"\b{re.escape(w)}\b", lowered)) for w in words)

    def by(key: Callable[[int, Question], Any]) -> Callable[[Question], int]:
        return lambda q: max(range(len(q.options)), key=lambda i: key(i, q))

    return {
        "longest": by(lambda i, q: (len(q.options[i]), -i)),
        "shortest": by(lambda i, q: (-len(q.options[i]), -i)),
        "second_longest": lambda q: sorted(range(len(q.options)), key=lambda i: (-len(q.options[i]), i))[1],
        "most_hedged": by(lambda i, q: (count(q.options[i], hedges), -i)),
        "test_wise": by(lambda i, q: (-count(q.options[i], absolute), count(q.options[i], careful), -i)),
    }


def _rate(hits: int, n: int) -> float | None:
    return hits / n if n else None


def _binomial_tail(hits: int, n: int, p: float) -> float:
    """P(X ≥ hits) for X ~ Binomial(n, p)."""
    return float(binom.sf(hits - 1, n, p))


def lint(item_set: ItemSet, *, languages: Sequence[str] = ("zh", "en")) -> dict[str, Any]:
    """The cue report of ``item_set`` (see the module docstring); ``ok`` is False when a stem-blind picker beats
    chance by more than :data:`MAX_EXCESS_OVER_CHANCE` bank-wide in any language, or near-duplicates exist."""
    report: dict[str, Any] = {"source": item_set.source, "digest": item_set.digest, "languages": {},
                              "max_excess_over_chance": MAX_EXCESS_OVER_CHANCE}
    problems: list[str] = []
    for lang in languages:
        asked = questions(item_set, lang)
        if not asked:
            continue
        by_dimension: dict[str, list[Question]] = defaultdict(list)
        for question in asked:
            by_dimension[question.dimension].append(question)
        pickers = _rule_pickers(lang)
        learned = ("naive_bayes", "naive_bayes_runner_up", "logistic", "logistic_runner_up")
        hits: dict[str, dict[str, int]] = {name: Counter() for name in [*learned, *pickers]}
        for dimension, own in by_dimension.items():
            others = [q for q in asked if q.dimension != dimension]
            for name, classifier in (("naive_bayes", OptionClassifier(others, lang)),
                                     ("logistic", LogisticOptionClassifier(others, lang))):
                for question in own:
                    ranking = classifier.ranking(question)
                    hits[name][dimension] += ranking[0] == question.gold
                    # a gold that is systematically the reader's second choice is a cue too
                    hits[f"{name}_runner_up"][dimension] += ranking[1] == question.gold
            for question in own:
                for name, pick in pickers.items():
                    hits[name][dimension] += pick(question) == question.gold
        chance = sum(1 / len(q.options) for q in asked) / len(asked)
        baselines = {}
        for name, per_dimension in hits.items():
            total = sum(per_dimension.values())
            accuracy = total / len(asked)
            flagged = []
            for dimension, own in sorted(by_dimension.items()):
                rate = per_dimension[dimension] / len(own)
                dimension_chance = sum(1 / len(q.options) for q in own) / len(own)
                if rate > dimension_chance + MAX_EXCESS_OVER_CHANCE and \
                        _binomial_tail(per_dimension[dimension], len(own), dimension_chance) < 0.01:
                    flagged.append(dimension)
            baselines[name] = {"accuracy": round(accuracy, 4), "chance": round(chance, 4),
                               "excess": round(accuracy - chance, 4), "n": len(asked),
                               "by_dimension": {d: round(per_dimension[d] / len(q), 4)
                                                for d, q in sorted(by_dimension.items())},
                               "dimensions_above_chance": flagged}
            if accuracy - chance > MAX_EXCESS_OVER_CHANCE:
                problems.append(f"[{lang}] {name} picks the gold on {accuracy:.1%} of {len(asked)} single-answer "
                                f"items (chance {chance:.1%}; at most +{MAX_EXCESS_OVER_CHANCE:.0%} allowed)")
        ranks = Counter()
        for question in asked:
            order = sorted(range(len(question.options)), key=lambda i: (-len(question.options[i]), i))
            ranks[order.index(question.gold) + 1] += 1
        report["languages"][lang] = {"single_answer_items": len(asked), "baselines": baselines,
                                     "gold_length_rank": dict(sorted(ranks.items())),
                                     "cue_features": _cue_features(asked, lang)}
    duplicates = near_duplicates(item_set.items)
    report["near_duplicates"] = duplicates
    problems += [f"near-duplicate stems: {a} ~ {b} ({similarity:.2f})" for a, b, similarity in duplicates]
    report["problems"] = problems
    report["ok"] = not problems
    return report


def _cue_features(asked: Sequence[Question], lang: str, limit: int = 15) -> list[dict[str, Any]]:
    """Features far more (or less) frequent in golds than the gold's share of options predicts."""
    gold, distractor = Counter(), Counter()
    expected = sum(1 / len(q.options) for q in asked) / len(asked)
    for question in asked:
        for index, text in enumerate(question.options):
            (gold if index == question.gold else distractor).update(_features(text, lang))
    cues = []
    for feature in set(gold) | set(distractor):
        g, d = gold[feature], distractor[feature]
        n = g + d
        if n < 8:
            continue
        high, low = _binomial_tail(g, n, expected), float(binom.cdf(g, n, expected))
        if min(high, low) < 0.001:
            cues.append({"feature": feature, "in_golds": g, "in_distractors": d, "p": min(high, low)})
    cues.sort(key=lambda c: c["p"])
    return [{**c, "p": float(f"{c['p']:.2g}")} for c in cues[:limit]]


def _shingles(text: str) -> set[str]:
    compact = re.sub(r"\s+", "", text.lower())
    return {compact[i:i + 3] for i in range(len(compact) - 2)}


def near_duplicates(items: Sequence[Item], threshold: float = NEAR_DUPLICATE) -> list[tuple[str, str, float]]:
    """Pairs of items whose stems (in every language they share) are more alike than ``threshold``."""
    stems = []
    for item in items:
        text = " ".join(item.text(item.stem, lang) or "" for lang in sorted(item.languages()))
        stems.append((item.item_id, _shingles(text)))
    index: dict[str, list[int]] = defaultdict(list)
    for position, (_id, shingles) in enumerate(stems):
        for shingle in shingles:
            index[shingle].append(position)
    pairs = []
    for position, (item_id, shingles) in enumerate(stems):
        overlap: Counter = Counter()
        for shingle in shingles:
            overlap.update(p for p in index[shingle] if p > position)
        for other, shared in overlap.items():
            union = len(shingles) + len(stems[other][1]) - shared
            if union and shared / union > threshold:
                pairs.append((item_id, stems[other][0], round(shared / union, 3)))
    return sorted(pairs)
