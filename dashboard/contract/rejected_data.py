"""What a rejection keeps of its data and context: the JSON itself, or its beginning cut to a budget.

The bridge keeps the result in memory and the history stores it; ``rejections.pretty`` shows it.
Plain Python: no Django import.
"""

from __future__ import annotations

from json.encoder import encode_basestring
from typing import Any

from dashboard.contract.rejections import MAX_NESTING, TRUNCATED

# Of a rejection's data and context, as JSON text: what the bridge holds in memory (the last
# RECENT per building), stores and shows. The cloud echoes whatever was published, which may be
# as large as the payload limit allows; pretty() shows far less than this anyway.
MAX_KEPT_CHARS = 32 * 1024


_SHORT = 200  # characters of JSON: a string this short is kept whole, past the budget if need be


class _Budget:
    def __init__(self, chars: int) -> None:
        self.left = chars


def _text_chars(text: str, limit: int) -> int:
    """JSON length of a string; one longer than ``limit`` is over it whatever its escapes."""
    return len(text) + 2 if len(text) > limit else len(encode_basestring(text))


def _scalar_chars(value: Any, limit: int) -> int:
    if isinstance(value, str):
        return _text_chars(value, limit)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):  # str() refuses ints over 4300 digits; this never fails
        return value.bit_length() // 3 + 2
    return len(repr(value))


# Sizes count as json.dumps writes by default: ", " between items, ": " after keys.


def _within(value: Any, limit: int) -> bool:
    """Whether ``value`` takes at most ``limit`` characters as JSON; stops counting past it."""
    total = 0
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            total += 2
            for key, child in node.items():
                total += _text_chars(str(key), limit) + 4
                if total > limit:
                    return False
                stack.append(child)
        elif isinstance(node, list):
            total += 2
            for child in node:
                total += 2
                if total > limit:
                    return False
                stack.append(child)
        else:
            total += _scalar_chars(node, limit)
        if total > limit:
            return False
    return True


def _cut_text(text: str, budget: _Budget) -> str:
    size = _text_chars(text, max(budget.left, _SHORT))
    if size <= budget.left or size <= _SHORT:
        budget.left -= size
        return text
    keep = max(budget.left - 2, 0)
    head = text[:keep]
    escaped = len(encode_basestring(head)) - 2
    if escaped > keep:  # quotes, backslashes, control characters: keep fewer
        head = head[: keep * len(head) // escaped]
    budget.left = 0
    return f"{head}… (truncated: {len(text)} characters)"


def _cut(value: Any, budget: _Budget, depth: int) -> Any:
    if not isinstance(value, dict | list):
        if isinstance(value, str):
            return _cut_text(value, budget)
        budget.left -= _scalar_chars(value, budget.left)
        return value
    if depth >= MAX_NESTING:
        budget.left -= len(TRUNCATED) + 2
        return TRUNCATED
    budget.left -= 2
    if isinstance(value, list):
        items: list[Any] = []
        for index, child in enumerate(value):
            if budget.left <= 0:
                items.append(f"… (truncated: {len(value) - index} more items)")
                break
            budget.left -= 2
            items.append(_cut(child, budget, depth + 1))
        return items
    members: dict[str, Any] = {}
    for index, (key, child) in enumerate(value.items()):
        if budget.left <= 0:
            members["…"] = f"(truncated: {len(value) - index} more keys)"
            break
        budget.left -= 4
        members[_cut_text(str(key), budget)] = _cut(child, budget, depth + 1)
    return members


def kept(value: Any, max_chars: int = MAX_KEPT_CHARS) -> Any:
    """``value`` (parsed JSON) as a rejection keeps it: itself when its JSON is within about
    ``max_chars`` characters, else a copy of its beginning with each cut stated where it is made.

    A cut string ends "… (truncated: N characters)", a cut list ends with the item
    "… (truncated: N more items)", a cut object ends with the key "…" whose value is
    "(truncated: N more keys)". Failing paths near the beginning stay where they were.
    """
    if _within(value, max_chars):
        return value
    return _cut(value, _Budget(max_chars), 0)
