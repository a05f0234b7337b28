"""The live watch's control chart: a Bernoulli CUSUM on whether each judged interaction was hazardous.

Reynolds & Stoumbos (J. Quality Technology 31, 1999): each sample adds its log-likelihood ratio of the alarm rate
p1 against the approved rate p0 (hazardous: ln(p1/p0); safe: ln((1-p1)/(1-p0)) < 0), the statistic never falls
below zero, and it signals at the limit h. Here the weights are scaled so a safe sample counts −1 and a hazardous
one +m (m = the ratio rounded), which makes the chart an integer Markov chain whose average run lengths are
computed exactly; h is the smallest limit whose in-control run length reaches the target (false alarms rare).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

#: Samples between false alarms when nothing changed (at 100 graded samples a day, one every ~6 months).
TARGET_IN_CONTROL_ARL = 20_000
MAX_LIMIT = 5_000


@dataclass(frozen=True)
class Design:
    baseline_rate: float
    alarm_rate: float
    #: A hazardous sample's step (a safe one is −1).
    step: int
    #: The decision limit, in the same units.
    limit: int
    #: Expected samples to a (false) signal at the baseline rate, and to a signal at the alarm rate.
    arl_in_control: float
    arl_at_alarm: float

    def as_dict(self) -> dict[str, float]:
        return {"baseline_rate": self.baseline_rate, "alarm_rate": self.alarm_rate, "step": self.step,
                "limit": self.limit, "arl_in_control": round(self.arl_in_control, 1),
                "arl_at_alarm": round(self.arl_at_alarm, 1)}


def default_alarm_rate(baseline_rate: float) -> float:
    """The rate the chart is tuned to catch: three times the approved rate, and at least 2 points above it."""
    return min(0.5, max(3 * baseline_rate, baseline_rate + 0.02))


def step_for(baseline_rate: float, alarm_rate: float) -> int:
    up = math.log(alarm_rate / baseline_rate)
    down = -math.log((1 - alarm_rate) / (1 - baseline_rate))
    return max(1, round(up / down))


def run_length(step: int, limit: int, rate: float) -> float:
    """Average samples from zero to a signal when each sample is hazardous with probability ``rate`` (exact for
    the integer chain: states 0..limit-1, absorbing at ≥ limit)."""
    states = limit
    transitions = np.zeros((states, states))
    for state in range(states):
        up = state + step
        if up < states:
            transitions[state, up] += rate
        transitions[state, max(0, state - 1)] += 1 - rate
    lengths = np.linalg.solve(np.eye(states) - transitions, np.ones(states))
    return float(lengths[0])


def design(baseline_rate: float, alarm_rate: float | None = None,
           target: float = TARGET_IN_CONTROL_ARL) -> Design:
    """The chart for an approved rate: the smallest limit whose in-control run length reaches ``target``."""
    if not 0 < baseline_rate < 0.5:
        raise ValueError("the baseline hazard rate must lie between 0 and 0.5")
    alarm_rate = alarm_rate or default_alarm_rate(baseline_rate)
    if not baseline_rate < alarm_rate < 1:
        raise ValueError("the alarm rate must exceed the baseline rate")
    step = step_for(baseline_rate, alarm_rate)
    low, high = step, step
    while run_length(step, high, baseline_rate) < target:
        low, high = high, high * 2
        if high > MAX_LIMIT:
            raise ValueError("no limit up to 5,000 reaches the target run length for these rates")
    while low < high:  # the run length grows with the limit
        middle = (low + high) // 2
        if run_length(step, middle, baseline_rate) >= target:
            high = middle
        else:
            low = middle + 1
    return Design(baseline_rate, alarm_rate, step, high, run_length(step, high, baseline_rate),
                  run_length(step, high, alarm_rate))


def advance(statistic: float, hazardous: bool, step: int) -> float:
    return max(0.0, statistic + (step if hazardous else -1))


def first_signal(samples: Iterable[bool], chart: Design, statistic: float = 0.0) -> int | None:
    """The index of the sample at which the chart signals, or None."""
    for index, hazardous in enumerate(samples):
        statistic = advance(statistic, hazardous, chart.step)
        if statistic >= chart.limit:
            return index
    return None
