"""Reading the cloud's refusals: which ones are the same error, and where the data failed."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any

from dashboard.contract.topics import KIND_NAMES, Kind

# The cloud's messages end with the refused value ('Value: "Meta_New".') and name positions
# ('Position: [0]/name'); the same mistake in other data differs only in those.
_VALUE = re.compile(r"(Value:\s*).*$", re.S)
_INDEX = re.compile(r"\[\d+\]")
# Possessive, and an unclosed quote matches to where its string stops (then is left as it is):
# a plain '"(?:[^"\\]|\\.)*"' rescans the rest from every quote, quadratic in a hostile message.
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*+(")?')
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.])")


def mask(message: str) -> str:
    """The message with values and list positions masked, so equal errors compare equal."""
    masked = _VALUE.sub(r"\1…", message)
    masked = _INDEX.sub("[i]", masked)
    masked = _QUOTED.sub(_mask_quoted, masked)
    return _NUMBER.sub("#", masked).strip()


def _mask_quoted(match: re.Match[str]) -> str:
    # No quote inside an unclosed string can open one the plain pattern would match.
    return '"…"' if match.group(1) else match.group(0)


def signature(kind: str, message: str) -> str:
    """A short stable key for (topic kind, masked message): one group per mistake."""
    return hashlib.sha256(f"{kind}\n{mask(message)}".encode()).hexdigest()[:32]


# --- where the data failed, and the data shown with that place marked ---------------------------

# 'Position: [0]/name. Value: …' (the cloud's and payloads.validate's), also JSON-pointer style
# 'Position: /value/level.'; the position ends at the next '. ' or at the message's end.
_POSITION_END = re.compile(r"\.\s")
_LIST_INDEX = re.compile(r"\[(\d+)\]")
_MAX_POSITION = 500  # characters; a longer "position" is not one

MAX_LINES = 400
MAX_CHARS = 20_000
MAX_NESTING = 40  # deeper than any contract payload (payloads.MAX_DEPTH is 32)
TRUNCATED = "… (truncated)"
INDENT = "  "


def _position(message: str) -> str | None:
    """The text after the first 'Position:', up to the next '. ' or the end (less a final '.').

    Plain string searches: a regex with a lazy group before '\\.?\\s*$' backtracks over every
    run of spaces, quadratic in a hostile message (up to 64 KiB, re-read on every render).
    """
    if not isinstance(message, str):
        return None
    start = message.find("Position:")
    if start < 0:
        return None
    rest = message[start + len("Position:") :]
    end = _POSITION_END.search(rest)
    if end is not None:
        return rest[: end.start()].strip()
    rest = rest.rstrip()
    return rest.removesuffix(".").strip()


def failing_path(message: str) -> list[int | str] | None:
    """The path the message's ``Position:`` names, e.g. ``[0, "name"]``; None when it has none.

    ``(root)`` is the whole payload: ``[]``. A ``[i]`` segment is a list index (an int), any
    other segment an object key; digits in a ``/0/name`` pointer are taken as indexes too.
    """
    position = _position(message)
    if position is None:
        return None
    if not position or len(position) > _MAX_POSITION:
        return None
    if position == "(root)":
        return []
    path: list[int | str] = []
    for part in position.split("/"):
        if not part:
            continue  # a pointer's leading "/"
        index = _LIST_INDEX.fullmatch(part)
        if index:
            path.append(int(index.group(1)))
        elif part.isdigit() and position.startswith("/"):
            path.append(int(part))
        else:
            path.append(part.replace("~1", "/").replace("~0", "~"))
    return path


def _resolve(data: Any, path: list[int | str] | tuple | None) -> tuple | None:
    """The longest prefix of ``path`` that exists in ``data``, in its own key types.

    None when nothing of a non-empty path exists (nothing to mark).
    """
    if path is None:
        return None
    found: list[Any] = []
    node = data
    for step in path:
        if isinstance(node, list):
            index = step if isinstance(step, int) else int(step) if str(step).isdigit() else None
            if index is None or isinstance(index, bool) or not 0 <= index < len(node):
                break
            found.append(index)
            node = node[index]
        elif isinstance(node, dict):
            key = step if step in node else str(step)
            if key not in node:
                break
            found.append(key)
            node = node[key]
        else:
            break
    if path and not found:
        return None
    return tuple(found)


class _Full(Exception):
    """The pretty-print reached its line or character budget."""


class _Lines:
    """Collects (text, highlight) lines within the budget."""

    def __init__(self, max_lines: int, max_chars: int) -> None:
        self.lines: list[tuple[str, bool]] = []
        self.max_lines = max_lines
        self.chars_left = max_chars

    def add(self, text: str, highlight: bool) -> None:
        if len(self.lines) >= self.max_lines or self.chars_left <= 0:
            raise _Full
        if len(text) > self.chars_left:
            self.lines.append((text[: self.chars_left], highlight))
            self.chars_left = 0
            raise _Full
        self.lines.append((text, highlight))
        self.chars_left -= len(text) + 1


def _scalar(value: Any, budget: int) -> str:
    """One JSON scalar as json.dumps writes it, never much longer than ``budget``."""
    if isinstance(value, str):
        if len(value) > budget:
            return json.dumps(value[:budget], ensure_ascii=False) + "…"
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, bool | int | float):
        try:
            return json.dumps(value)
        except ValueError:  # an int beyond Python's 4300-digit conversion limit
            return "(number too long)"
    return json.dumps(str(value), ensure_ascii=False)  # not JSON: shown as its text


def _key(key: Any, budget: int) -> str:
    return _scalar(key if isinstance(key, str) else str(key), budget)


def _emit(
    out: _Lines,
    value: Any,
    depth: int,
    lead: str,
    comma: str,
    here: tuple | None,
    target: tuple | None,
    marked: bool,
) -> None:
    """Write ``value`` as json.dumps(indent=2) would, its first line prefixed by ``lead``.

    ``here`` is the value's path while it may still lead to ``target``, else None.
    """
    if here is not None and target is not None and here == target[: len(here)]:
        marked = marked or len(here) == len(target)
    else:
        here = None  # off the path: no child leads to the target either
    pad = INDENT * depth
    if isinstance(value, dict | list) and value:
        if depth >= MAX_NESTING:
            out.add(f"{pad}{lead}{'{…}' if isinstance(value, dict) else '[…]'}{comma}", marked)
            return
        opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
        out.add(f"{pad}{lead}{opening}", marked)
        # Keys sorted: PostgreSQL's jsonb keeps its own key order, and an entry must read
        # the same live (from memory) and after a reload (from the database).
        items = (
            sorted(value.items(), key=lambda item: str(item[0]))
            if isinstance(value, dict)
            else enumerate(value)
        )
        last = len(value) - 1
        for position, (key, child) in enumerate(items):
            child_lead = f"{_key(key, out.chars_left)}: " if isinstance(value, dict) else ""
            _emit(
                out,
                child,
                depth + 1,
                child_lead,
                "," if position < last else "",
                None if here is None else (*here, key),
                target,
                marked,
            )
        out.add(f"{pad}{closing}{comma}", marked)
        return
    if isinstance(value, dict | list):
        text = "{}" if isinstance(value, dict) else "[]"
    else:
        text = _scalar(value, out.chars_left)
    out.add(f"{pad}{lead}{text}{comma}", marked)


def pretty(
    data: Any,
    path: list[int | str] | tuple | None = None,
    *,
    max_lines: int = MAX_LINES,
    max_chars: int = MAX_CHARS,
) -> list[dict[str, Any]]:
    """``data`` as ``json.dumps(indent=2, ensure_ascii=False)`` lines, grouped into segments.

    Each segment is ``{"text": str, "highlight": bool}``; consecutive lines of the same kind
    share one segment, and the segments' texts joined give the whole text. The lines of the
    element at ``path`` (its key line through its closing bracket) are highlighted; a path
    that does not exist in the data marks its deepest existing element, or nothing.
    Bounded: at most ``max_lines`` lines and about ``max_chars`` characters, then a
    "… (truncated)" line. Plain text only: the template escapes it.
    """
    out = _Lines(max_lines, max_chars)
    try:
        _emit(out, data, 0, "", "", (), _resolve(data, path), False)
    except _Full:
        out.lines.append((TRUNCATED, False))
    except RecursionError:  # pragma: no cover - MAX_NESTING stops well before
        out.lines.append((TRUNCATED, False))
    segments: list[dict[str, Any]] = []
    for text, highlight in out.lines:
        if segments and segments[-1]["highlight"] == highlight:
            segments[-1]["text"] += "\n" + text
        else:
            if segments:
                segments[-1]["text"] += "\n"
            segments.append({"text": text, "highlight": highlight})
    return segments


# --- one rejection as the inspector shows it -----------------------------------------------------

MAX_CONTEXT_ITEMS = 30
MAX_CONTEXT_VALUE = 500


def kind_label(kind: str) -> str:
    """What people call a kind of topic (``topics.KIND_NAMES``); an unknown kind as it is."""
    try:
        return KIND_NAMES[Kind(kind)]
    except ValueError:
        return kind


def _constraints(context: Any) -> list[dict[str, str]]:
    """The context's schema keywords as (name, value) rows: strings as they are, others as JSON."""
    if not isinstance(context, dict):
        return []
    rows = []
    for name, value in sorted(context.items(), key=lambda item: str(item[0]))[:MAX_CONTEXT_ITEMS]:
        if isinstance(value, str):
            text = value if len(value) <= MAX_CONTEXT_VALUE else value[:MAX_CONTEXT_VALUE] + "…"
        else:
            text = _compact(value)
        rows.append({"name": str(name)[:MAX_CONTEXT_VALUE], "value": text})
    return rows


def _compact(value: Any) -> str:
    """Short JSON for a value, bounded without encoding all of a huge one."""
    out: list[str] = []
    size = 0
    try:
        for chunk in json.JSONEncoder(ensure_ascii=False, default=str).iterencode(value):
            out.append(chunk)
            size += len(chunk)
            if size > MAX_CONTEXT_VALUE:
                return "".join(out)[:MAX_CONTEXT_VALUE] + "…"
    except (ValueError, RecursionError):  # a 4300-digit int, absurd nesting
        return "(unreadable)"
    return "".join(out)


def _position_text(message: str) -> str | None:
    position = _position(message)
    return position[:_MAX_POSITION] if position else None


def _source(
    topic: str, device_id: Any, device_name: str | None, building_name: str
) -> dict[str, Any]:
    """Who the rejection is about: the device (name and id) or the building."""
    parts = topic.split("/", 2)
    topic_id = parts[1] if len(parts) > 1 else ""
    if parts[0] == "buildings":
        return {"scope": "building", "name": building_name, "id": topic_id[:100]}
    if device_id is not None:
        return {"scope": "device", "name": device_name or "", "id": str(device_id)}
    # A device removed from the inventory since: only the topic still says which.
    return {"scope": "device", "name": "", "id": topic_id[:100]}


def entry(
    *,
    topic: str,
    kind: str,
    message: str,
    context: Any,
    data: Any,
    received_at: datetime,
    device_id: Any,
    device_name: str | None,
    building_name: str,
) -> dict[str, Any]:
    """One rejection as ``fragments/rejection_entry.html`` shows it; plain values in, plain out.

    Called for stored rows by the inspector and for fresh ones by the bridge, so it takes no
    model instances and touches no database. ``device_id`` is a UUID (or its text) or None;
    every string may be hostile and is only ever rendered through autoescaping.
    ``received_at`` is shown on its own clock: callers give it in the building's zone.
    """
    message = message if isinstance(message, str) else str(message)
    path = failing_path(message)
    data_segments = pretty(data, path)
    return {
        "topic": topic,
        "kind": kind,
        "kind_label": kind_label(kind),
        "message": message,
        "masked": mask(message),
        "signature": signature(kind, message),
        "position": _position_text(message),
        "context": context,
        "constraints": _constraints(context),
        "context_segments": pretty(context),
        "data_segments": data_segments,
        "highlighted": any(segment["highlight"] for segment in data_segments),
        "received_at": received_at,
        "source": _source(topic, device_id, device_name, building_name),
        "device_id": str(device_id) if device_id is not None else None,
        "device_name": device_name,
        "building_name": building_name,
    }
