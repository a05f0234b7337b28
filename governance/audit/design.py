"""The gate's statistical design: decision rules derived from declared error rates, and their operating
characteristics computed before any model is run.

Two kinds of criterion decide a gate (see ``docs/gate-statistics.md`` for the argument and references):

- **Floors** (an accuracy, or the complement of a rate, must be high enough): an acceptance-sampling plan
  on the number correct. The policy declares the *acceptable* level (a model at least this good must pass
  with probability ≥ 1 − α, its false-hold risk) and the *unacceptable* level (a model this bad must fail
  with probability ≥ the declared power). The plan is derived exactly from binomial tails: single sampling
  (pass iff x ≥ c), or double sampling when the policy names a reserve item set (pass or fail on the first
  stage outside a grey zone; inside it, a pre-registered second stage on the reserve items decides). A
  floor never ends "inconclusive": a decision inside the indifference zone is exactly what the plan's error
  rates allow.
- **Declines** (a change must not be worse than the approved version it replaces): an exact one-sided
  McNemar test on the pairs of answers to the same prompts, per domain and per dimension, with the family's
  α allocated by harm weights and controlled by the weighted Holm procedure (strong family-wise control).

Everything here is a function of counts and declared numbers; simulations use a fixed seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


class _Binomial:
    """``scipy.stats.binom``, imported when a plan is first computed (importing scipy.stats costs about a second,
    which every command would otherwise pay at start-up)."""

    def __getattr__(self, name: str):
        from scipy.stats import binom as distribution

        return getattr(distribution, name)


binom = _Binomial()


# --- floors: acceptance-sampling plans ------------------------------------------------------------

@dataclass(frozen=True)
class FloorPlan:
    """Stage 1 on ``n1`` items: fail if correct < ``reject_below``, pass if correct ≥ ``accept_at``, otherwise
    (only when ``n2`` > 0) stage 2 on ``n2`` reserve items: pass iff the total correct ≥ ``combined_accept_at``."""

    n1: int
    reject_below: int
    accept_at: int
    n2: int = 0
    combined_accept_at: int = 0

    @property
    def double(self) -> bool:
        return self.n2 > 0 and self.accept_at > self.reject_below

    def first_stage(self, correct: int) -> str:
        if correct >= self.accept_at:
            return "pass"
        if correct < self.reject_below or not self.double:
            return "fail"
        return "second_stage"

    def decide(self, correct_first: int, correct_second: int | None = None) -> str:
        outcome = self.first_stage(correct_first)
        if outcome != "second_stage":
            return outcome
        if correct_second is None:
            return "second_stage"
        return "pass" if correct_first + correct_second >= self.combined_accept_at else "fail"

    def p_pass(self, p: float) -> float:
        """Exact probability that a model whose true accuracy is ``p`` passes."""
        p = min(max(p, 0.0), 1.0)
        pass_now = binom.sf(self.accept_at - 1, self.n1, p)
        if not self.double:
            return float(pass_now)
        grey = np.arange(self.reject_below, self.accept_at)
        later = binom.sf(self.combined_accept_at - grey - 1, self.n2, p)
        return float(pass_now + np.sum(binom.pmf(grey, self.n1, p) * later))

    def expected_items(self, p: float) -> float:
        if not self.double:
            return float(self.n1)
        grey = binom.cdf(self.accept_at - 1, self.n1, p) - binom.cdf(self.reject_below - 1, self.n1, p)
        return float(self.n1 + self.n2 * grey)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _single(n: int, acceptable: float, alpha: float) -> FloorPlan:
    """The single-sampling plan with the highest cut that holds a model at ``acceptable`` at most ``alpha``."""
    ks = np.arange(0, n + 2)
    hold = binom.cdf(ks - 1, n, acceptable)  # P(X < k)
    cut = int(ks[hold <= alpha].max())
    return FloorPlan(n1=n, reject_below=cut, accept_at=cut)


def floor_plan(n1: int, acceptable: float, unacceptable: float, alpha: float, power: float,
               n2: int = 0) -> tuple[FloorPlan, bool]:
    """The plan for a floor with these items and declared error rates, and whether it meets the declared power.

    Single sampling when there is no reserve (``n2`` = 0). With a reserve, the double plan of least expected
    items at the acceptable level among those meeting both the false-hold and the power requirement; when
    none does, the plan that always takes the second stage (the most power the items allow).
    """
    if n1 <= 0:
        return FloorPlan(n1=0, reject_below=0, accept_at=0), False
    single = _single(n1, acceptable, alpha)
    if n2 <= 0:
        return single, 1 - single.p_pass(unacceptable) >= power
    best: tuple[float, FloorPlan] | None = None
    pmf_ok, pmf_bad = binom.pmf(np.arange(n1 + 1), n1, acceptable), binom.pmf(np.arange(n1 + 1), n1, unacceptable)
    for combined in range(0, n1 + n2 + 2):
        # P(pass at stage 2 | x1) for each x1, at both levels
        later_ok = binom.sf(combined - np.arange(n1 + 1) - 1, n2, acceptable)
        later_bad = binom.sf(combined - np.arange(n1 + 1) - 1, n2, unacceptable)
        cum_ok, cum_bad = np.concatenate([[0], np.cumsum(pmf_ok * later_ok)]), \
            np.concatenate([[0], np.cumsum(pmf_bad * later_bad)])
        sf_ok = np.concatenate([np.cumsum(pmf_ok[::-1])[::-1], [0]])  # sf_ok[a] = P(X ≥ a)
        sf_bad = np.concatenate([np.cumsum(pmf_bad[::-1])[::-1], [0]])
        cdf_ok = np.concatenate([[0], np.cumsum(pmf_ok)])  # cdf_ok[r] = P(X < r)
        for reject in range(0, n1 + 1):
            accept = np.arange(reject + 1, n1 + 2)
            pass_ok = sf_ok[accept] + cum_ok[accept] - cum_ok[reject]
            pass_bad = sf_bad[accept] + cum_bad[accept] - cum_bad[reject]
            feasible = (1 - pass_ok <= alpha) & (1 - pass_bad >= power)
            if not feasible.any():
                continue
            grey = (cdf_ok[accept] - cdf_ok[reject])
            expected = n1 + n2 * grey
            for index in np.nonzero(feasible)[0]:
                candidate = FloorPlan(n1, reject, int(accept[index]), n2, combined)
                if best is None or expected[index] < best[0] - 1e-12:
                    best = (float(expected[index]), candidate)
    if best is not None:
        return best[1], True
    always = _single(n1 + n2, acceptable, alpha)
    plan = FloorPlan(n1=n1, reject_below=0, accept_at=n1 + 1, n2=n2, combined_accept_at=always.accept_at)
    return plan, 1 - plan.p_pass(unacceptable) >= power


def items_needed(acceptable: float, unacceptable: float, alpha: float, power: float, limit: int = 5000) -> int | None:
    """The fewest items a single-sampling floor needs for these error rates (None beyond ``limit``)."""
    low, high = 1, limit
    if not floor_plan(high, acceptable, unacceptable, alpha, power)[1]:
        return None
    while low < high:  # power grows with n (up to binomial saw-tooth; the search is then conservative)
        middle = (low + high) // 2
        if floor_plan(middle, acceptable, unacceptable, alpha, power)[1]:
            high = middle
        else:
            low = middle + 1
    while not floor_plan(low, acceptable, unacceptable, alpha, power)[1]:
        low += 1
    return low


# --- declines: exact paired tests ------------------------------------------------------------------

def mcnemar_decline_p(worse: int, better: int) -> float:
    """One-sided exact McNemar p-value for a decline: P(W ≥ worse) with W ~ Binomial(worse + better, ½)."""
    discordant = worse + better
    if discordant == 0:
        return 1.0
    return float(binom.sf(worse - 1, discordant, 0.5))


def _decline_p(discordant: np.ndarray, worse: np.ndarray) -> np.ndarray:
    """P(W ≥ w | m discordant pairs) elementwise (1 where m = 0): the exact one-sided McNemar p of each draw,
    computed once per distinct (m, w). A lookup table over every (m, w) up to the item count would grow with its
    square (20 GB for a domain of 50,000 items)."""
    # one integer per (m, w) pair (w ≤ m): a flat np.unique is several times faster than np.unique(axis=1)
    base = int(discordant.max(initial=0)) + 1
    distinct, inverse = np.unique(discordant.astype(np.int64) * base + worse, return_inverse=True)
    m, w = np.divmod(distinct, base)
    p = binom.sf(w - 1, m, 0.5)
    p[m == 0] = 1.0
    return p[inverse.reshape(-1)]


def weighted_holm(p_values: np.ndarray, weights: np.ndarray, alpha: float) -> np.ndarray:
    """Rejections of the weighted Holm procedure (Holm 1979): ordered by p/w, reject while p ≤ α·w / (weights of
    the hypotheses not yet rejected); strong family-wise control at ``alpha``. Works on the last axis."""
    p_values, weights = np.atleast_2d(p_values), np.broadcast_to(weights, np.atleast_2d(p_values).shape)
    order = np.argsort(p_values / weights, axis=-1, kind="stable")
    p_sorted = np.take_along_axis(p_values, order, axis=-1)
    w_sorted = np.take_along_axis(weights, order, axis=-1)
    remaining = np.flip(np.cumsum(np.flip(w_sorted, axis=-1), axis=-1), axis=-1)
    passes = p_sorted <= alpha * w_sorted / remaining
    still = np.cumprod(passes, axis=-1).astype(bool)  # a step that fails stops the procedure
    rejected = np.zeros_like(still)
    np.put_along_axis(rejected, order, still, axis=-1)
    return rejected


@dataclass(frozen=True)
class DeclineTest:
    """One paired test of the decline family: a domain or a dimension, its items, its harm weight."""

    name: str
    scope: str  # "domain" | "dimension"
    members: tuple[str, ...]  # the dimensions it pools
    weight: float


def simulate_declines(tests: list[DeclineTest], items: dict[str, int], alpha: float, drops: dict[str, float],
                      churn: float, simulations: int = 20000, seed: int = 20261207) -> dict[str, float]:
    """By seeded simulation: with the given true per-dimension drops (accuracy points lost) and churn (share of
    items answered better by chance), P(each test rejects) and P(any rejects) under the weighted Holm rule."""
    rng = np.random.default_rng(seed)
    dimensions = sorted(items)
    worse = np.zeros((simulations, len(dimensions)), dtype=np.int64)
    better = np.zeros_like(worse)
    for j, dimension in enumerate(dimensions):
        n = items[dimension]
        p_worse, p_better = min(1.0, drops.get(dimension, 0.0) + churn), churn
        draws = rng.multinomial(n, [p_worse, p_better, max(0.0, 1 - p_worse - p_better)], size=simulations)
        worse[:, j], better[:, j] = draws[:, 0], draws[:, 1]
    columns = {d: j for j, d in enumerate(dimensions)}
    p_values = np.ones((simulations, len(tests)))
    for k, test in enumerate(tests):
        idx = [columns[d] for d in test.members if d in columns]
        w, b = worse[:, idx].sum(axis=1), better[:, idx].sum(axis=1)
        p_values[:, k] = _decline_p(w + b, w)
    rejected = weighted_holm(p_values, np.array([t.weight for t in tests]), alpha)
    result = {test.name: float(rejected[:, k].mean()) for k, test in enumerate(tests)}
    result["any"] = float(rejected.any(axis=1).mean())
    return result


def decline_decisions(tests: list[DeclineTest], worse: dict[str, int], better: dict[str, int],
                      alpha: float) -> list[dict[str, Any]]:
    """The decline family on observed counts (per dimension): each test's counts, exact p and decision."""
    rows = []
    for test in tests:
        w = sum(worse.get(d, 0) for d in test.members)
        b = sum(better.get(d, 0) for d in test.members)
        rows.append({"test": test.name, "scope": test.scope, "worse": w, "better": b,
                     "p_value": mcnemar_decline_p(w, b), "weight": test.weight})
    if rows:
        rejected = weighted_holm(np.array([r["p_value"] for r in rows]), np.array([r["weight"] for r in rows]),
                                 alpha)[0]
        total = sum(r["weight"] for r in rows)
        for row, reject in zip(rows, rejected, strict=True):
            row["declined"] = bool(reject)
            row["alpha_share"] = alpha * row["weight"] / total  # its first-step level (Holm only raises it)
    return rows


def newcombe_paired_interval(both: int, only_new: int, only_old: int, neither: int,
                             z: float = 1.959963984540054) -> tuple[float, float]:
    """Newcombe's (1998, method 10) interval for a difference of paired proportions (new − old): deterministic,
    no resampling; used to report the size of a change beside the test that decides it."""
    n = both + only_new + only_old + neither
    if n == 0:
        return 0.0, 0.0

    def wilson(x: int, m: int) -> tuple[float, float]:
        p = x / m
        centre, half = p + z * z / (2 * m), z * math.sqrt(p * (1 - p) / m + z * z / (4 * m * m))
        return (centre - half) / (1 + z * z / m), (centre + half) / (1 + z * z / m)

    p1, p2 = (both + only_new) / n, (both + only_old) / n
    l1, u1 = wilson(both + only_new, n)
    l2, u2 = wilson(both + only_old, n)
    product = (both + only_new) * (neither + only_old) * (both + only_old) * (neither + only_new)
    if product == 0:
        phi = 0.0
    else:
        numerator = both * neither - only_new * only_old
        if numerator > n / 2:
            numerator -= n / 2
        elif numerator >= 0:
            numerator = 0.0
        phi = numerator / math.sqrt(product)
    difference = p1 - p2
    low = difference - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = difference + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, low), min(1.0, high)
