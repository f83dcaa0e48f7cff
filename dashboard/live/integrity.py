"""Headcount integrity: does a place's count agree with its own in and out counters?

A pure function of the latest values, called for a live card and for the occupancy report
alike. The counts are untrusted (a sensor drifts, a reset is missed): a count that disagrees
with ``headcount_in - headcount_out`` by more than a tolerance, a negative count, or one
above 150 % of the place's capacity is named with the numbers that disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MINUS = "\u2212"  # the minus sign people read, not a hyphen
OVER_CAPACITY_PERCENT = 150


class Problem(StrEnum):
    MISMATCH = "mismatch"  # head_count is not headcount_in - headcount_out
    NEGATIVE = "negative"
    OVER_CAPACITY = "over_capacity"  # above OVER_CAPACITY_PERCENT of capacity


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing that disagrees, in words: ``in - out = 7, count = 12``."""

    problem: Problem
    text: str


@dataclass(frozen=True, slots=True)
class HeadcountWarning:
    """What is wrong with a place's count, and the numbers it was judged on."""

    findings: tuple[Finding, ...]
    head_count: int
    headcount_in: int | None
    headcount_out: int | None
    capacity: int | None

    @property
    def problems(self) -> tuple[Problem, ...]:
        return tuple(f.problem for f in self.findings)

    @property
    def text(self) -> str:
        return "; ".join(f.text for f in self.findings)


def _signed(number: int) -> str:
    return f"{MINUS}{-number}" if number < 0 else str(number)


def check_headcount(
    head_count: int | None,
    headcount_in: int | None,
    headcount_out: int | None,
    capacity: int | None,
    tolerance: int,
) -> HeadcountWarning | None:
    """None when the count looks right (or there is none), else what disagrees.

    ``tolerance``: how far the count may be from in - out (``HEADCOUNT_TOLERANCE``);
    the difference is only judged when both counters are known.
    """
    if head_count is None:
        return None
    findings = []
    if headcount_in is not None and headcount_out is not None:
        net = headcount_in - headcount_out
        if abs(head_count - net) > tolerance:
            text = f"in {MINUS} out = {_signed(net)}, count = {_signed(head_count)}"
            findings.append(Finding(Problem.MISMATCH, text))
    if head_count < 0:
        findings.append(Finding(Problem.NEGATIVE, f"count is negative ({_signed(head_count)})"))
    if capacity and head_count * 100 > capacity * OVER_CAPACITY_PERCENT:
        text = f"count {head_count} is over {OVER_CAPACITY_PERCENT} % of capacity {capacity}"
        findings.append(Finding(Problem.OVER_CAPACITY, text))
    if not findings:
        return None
    return HeadcountWarning(tuple(findings), head_count, headcount_in, headcount_out, capacity)
