"""Figures, targets, the results file and its table.

Every figure is a value next to a baseline measured in the same run, and their ratio. A
target is checked on the ratio or on the value, as its scenario states; ``pass`` is None for
an informational figure (no target).
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "<": operator.lt}
FIGURE_KEYS = ("name", "value", "unit", "baseline", "ratio", "target", "pass")


@dataclass(frozen=True)
class Target:
    """``on`` is "value" or "ratio"; e.g. Target("ratio", ">=", 0.5)."""

    on: str
    op: str
    bound: float

    def __str__(self) -> str:
        return f"{self.on} {self.op} {self.bound:g}"

    def check(self, value: float | None, ratio: float | None) -> bool:
        subject = value if self.on == "value" else ratio
        if subject is None or (isinstance(subject, float) and math.isnan(subject)):
            return False
        return bool(OPS[self.op](subject, self.bound))


@dataclass
class Figure:
    name: str
    value: float | None
    unit: str
    baseline: float | None
    ratio: float | None
    target: str
    passed: bool | None

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(FIGURE_KEYS, (*_values(self),), strict=True))


def _values(f: Figure) -> tuple[Any, ...]:
    return (
        f.name,
        _round(f.value),
        f.unit,
        _round(f.baseline),
        _round(f.ratio, 4),
        f.target,
        f.passed,
    )


def _round(x: float | None, digits: int = 3) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), digits)


def figure(
    name: str,
    value: float | None,
    unit: str,
    baseline: float | None,
    target: Target | None = None,
) -> Figure:
    """A figure with its ratio (value / baseline) and whether it meets ``target``."""
    ratio = value / baseline if value is not None and baseline else None
    return Figure(
        name=name,
        value=value,
        unit=unit,
        baseline=baseline,
        ratio=ratio,
        target=str(target) if target else "informational",
        passed=target.check(value, ratio) if target else None,
    )


def write_results(
    path: Path, machine: dict[str, Any], figures: Sequence[Figure], details: dict[str, Any]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "machine": machine,
        "figures": [f.as_dict() for f in figures],
        "details": details,
    }
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def _cell(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    if isinstance(x, float):
        return f"{x:,.3f}" if abs(x) < 10 else f"{x:,.1f}"
    return str(x)


def table(figures: Iterable[Figure], markdown: bool = False) -> str:
    """The figures as a plain or Markdown table."""
    header = ["figure", "value", "unit", "baseline", "ratio", "target", "pass"]
    rows = [
        [
            f.name,
            _cell(f.value),
            f.unit,
            _cell(f.baseline),
            _cell(f.ratio),
            f.target,
            _cell(f.passed) if f.passed is not None else "-",
        ]
        for f in figures
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:{'<' if i in (0, 2, 5) else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*row) for row in [header, *rows])


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]
