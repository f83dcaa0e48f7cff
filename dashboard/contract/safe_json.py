"""Untrusted bytes to JSON: UTF-8, finite numbers, bounded nesting, no lone surrogates.

What ``payloads.parse`` decodes every MQTT message with before any schema sees it.
Plain Python: no Django import.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any


class Refused(ValueError):
    """Bytes that are not JSON the cloud would accept; the message says why."""


class _NotFinite(ValueError):
    """Raised from inside json.loads for a number the cloud would not accept."""


def _no_constant(name: str) -> Any:
    raise _NotFinite(f"non-finite number {name}")


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise _NotFinite("non-finite number " + text[:20])
    return number


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


_CONTAINERS = (dict, list)
_PLAIN = frozenset({int, float, bool, type(None)})  # nothing to look into
_SCALARS = _PLAIN | {str}  # strings are looked into for lone surrogates only


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _shape_problem(data: Any, max_depth: int, check_strings: bool) -> str | None:
    """Why parsed JSON is unsafe to pass on (too deep, lone surrogate), or None.

    One nesting level at a time, skipping empty containers: a million-item list costs one
    pass over it, not a (node, depth) tuple per item.
    """
    if not isinstance(data, _CONTAINERS):
        surrogate = check_strings and isinstance(data, str) and _lone_surrogate(data)
        return "lone surrogate in a string" if surrogate else None
    level: list[Any] = [data]
    depth = 1  # of the containers in ``level``
    while level:
        at_limit = depth >= max_depth  # their container children would be too deep
        deeper: list[Any] = []
        for node in level:
            if isinstance(node, dict):
                children: Any = node.values()
                if check_strings and any(_lone_surrogate(key) for key in node):
                    return "lone surrogate in a string"
            else:
                children = node
            if set(map(type, children)) <= (_PLAIN if check_strings else _SCALARS):
                continue  # a list of numbers, say: looked at in C, not item by item
            for child in children:
                if isinstance(child, _CONTAINERS):
                    if at_limit:
                        return "nested too deeply"
                    if child:
                        deeper.append(child)
                elif check_strings and isinstance(child, str) and _lone_surrogate(child):
                    return "lone surrogate in a string"
        level = deeper
        depth += 1
    return None


# Built once: ``json.loads`` with hooks builds a new decoder per call, a measurable share of
# ingest at thousands of messages a second (docs/benchmarks.md, "Ingest").
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)


def loads(raw: bytes, max_depth: int) -> Any:
    """The JSON in ``raw``, or ``Refused`` saying why it is not safe to pass on."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("not UTF-8") from None
    try:
        data = _DECODER.decode(text)
    except RecursionError:
        raise Refused("nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise Refused(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except _NotFinite as exc:
        raise Refused(f"not JSON: {exc}") from None
    except ValueError:  # an integer over Python's 4300-digit conversion limit
        raise Refused("not JSON: number too long") from None
    check_strings = _SURROGATE_ESCAPE.search(raw) is not None
    if not check_strings and raw.count(b"[") + raw.count(b"{") < max_depth:
        return data  # cannot nest that deep, nothing to look for in its strings: the usual case
    problem = _shape_problem(data, max_depth, check_strings)
    if problem is not None:
        raise Refused(problem)
    return data
