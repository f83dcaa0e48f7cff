"""Headcount integrity: does a place's count agree with its own in and out counters?

A pure function of the latest values, called for a live card and for the occupancy report
alike. The counts are untrusted (a sensor drifts, a reset is missed): a count that disagrees
with ``headcount_in - headcount_out`` by more than a tolerance, a negative count, or one
above 150 % of the place's capacity is named with the numbers that disagree.

The in and out counters are cumulative; a count is not: it goes back to 0 when the place is
reset (an operator's or the nightly "Reset count") or empties. From then on the count is
judged against what the counters did since: their readings when the count last became 0
(``CountersAtZero``, kept by the bridge and stored with the latest count).
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


@dataclass(frozen=True, slots=True)
class CountersAtZero:
    """The in and out counters' readings when a place's count last became 0."""

    headcount_in: int | None
    headcount_out: int | None


def _signed(number: int) -> str:
    return f"{MINUS}{-number}" if number < 0 else str(number)


def check_headcount(
    head_count: int | None,
    headcount_in: int | None,
    headcount_out: int | None,
    capacity: int | None,
    tolerance: int,
    at_zero: CountersAtZero | None = None,
) -> HeadcountWarning | None:
    """None when the count looks right (or there is none), else what disagrees.

    ``tolerance``: how far the count may be from in - out (``HEADCOUNT_TOLERANCE``);
    the difference is only judged when both counters are known. ``at_zero``: the counters
    when the count last became 0, if it has; counters below those were themselves reset,
    and are then compared whole.
    """
    if head_count is None:
        return None
    findings = []
    if headcount_in is not None and headcount_out is not None:
        net, since = headcount_in - headcount_out, ""
        start_in, start_out = (
            (at_zero.headcount_in, at_zero.headcount_out) if at_zero else (None, None)
        )
        if (
            start_in is not None
            and start_out is not None
            and headcount_in >= start_in
            and headcount_out >= start_out
        ):
            net -= start_in - start_out
            since = " since the count was 0"
        if abs(head_count - net) > tolerance:
            text = f"in {MINUS} out{since} = {_signed(net)}, count = {_signed(head_count)}"
            findings.append(Finding(Problem.MISMATCH, text))
    if head_count < 0:
        findings.append(Finding(Problem.NEGATIVE, f"count is negative ({_signed(head_count)})"))
    if capacity and head_count * 100 > capacity * OVER_CAPACITY_PERCENT:
        text = f"count {head_count} is over {OVER_CAPACITY_PERCENT} % of capacity {capacity}"
        findings.append(Finding(Problem.OVER_CAPACITY, text))
    if not findings:
        return None
    return HeadcountWarning(tuple(findings), head_count, headcount_in, headcount_out, capacity)
