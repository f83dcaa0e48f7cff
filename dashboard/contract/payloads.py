"""Parse and validate MQTT payloads against the Gooee contract, never raising on bad bytes.

Errors take the cloud's rejected-envelope shape, so the emulator can publish them as the cloud
would and the dashboard can show what the cloud would say. Pure Python: no Django import.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from itertools import islice
from pathlib import Path
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator, ValidationError
from jsonschema.validators import extend

from dashboard.contract import meta_definitions, safe_json
from dashboard.contract.topics import Kind

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_DEPTH = 32  # the contract's payloads nest 4 deep; jsonschema recurses per level
MAX_ERRORS = 50  # a hostile list could otherwise yield one error per item
RAW_PREVIEW_BYTES = 2048
VALUE_PREVIEW_CHARS = 200

_HERE = Path(__file__).resolve().parent
_SCHEMA_DIR = _HERE / "schemas"

_SCHEMA_FILES: dict[Kind, str] = {
    Kind.META: "meta.json",
    Kind.META_ITEM: "meta_item.json",
    Kind.ACTION: "action.json",
    Kind.TYPED_ACTION: "typed_action.json",
    Kind.FAULT_ALARM: "fault_alarm.json",
    Kind.HEAD_COUNT: "headcount.json",
    Kind.HEADCOUNT_IN: "headcount.json",
    Kind.HEADCOUNT_OUT: "headcount.json",
    Kind.REJECTED_META: "rejected.json",
    Kind.REJECTED_FAULT_ALARM: "rejected.json",
}

# The contract's head_count examples say "headcount"; each topic accepts only its own names.
HEADCOUNT_NAMES: dict[Kind, tuple[str, ...]] = {
    Kind.HEAD_COUNT: ("headcount", "head_count"),
    Kind.HEADCOUNT_IN: ("headcount_in",),
    Kind.HEADCOUNT_OUT: ("headcount_out",),
}

# Opening sentence of the cloud's message per jsonschema keyword: data, not code.
MESSAGES: dict[str, str] = {
    "pattern": "regex pattern not matching",
    "type": "type mismatch",
    "minimum": "value below minimum",
    "exclusiveMinimum": "value below minimum",
    "maximum": "value above maximum",
    "exclusiveMaximum": "value above maximum",
    "multipleOf": "value not a multiple",
    "required": "missing required property",
    "additionalProperties": "unexpected property",
    "maxLength": "string too long",
    "minLength": "string too short",
    "enum": "value not allowed",
    "const": "value not allowed",
    "not": "value not allowed",
    "maxItems": "too many items",
    "minItems": "too few items",
    "uniqueItems": "duplicate items",
    "maxProperties": "too many properties",
    "minProperties": "too few properties",
    "anyOf": "no matching alternative",
    "oneOf": "no matching alternative",
    "format": "invalid format",
}
_DEFAULT_MESSAGE = "schema violation"
_WEAK = frozenset({"anyOf", "oneOf"})


@dataclass(frozen=True, slots=True)
class Payload:
    """An accepted message: its kind and the parsed JSON."""

    kind: Kind
    data: Any


@dataclass(frozen=True, slots=True)
class Malformed:
    """A refused message: a short reason, a bounded copy of the bytes, cloud-shaped errors."""

    kind: Kind
    reason: str
    raw: str
    errors: tuple[dict, ...] = ()


# --- schemas and validators, built once at import -------------------------------------------


@lru_cache(maxsize=512)
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    # JSON Schema patterns are ECMA-262, where "$" is the very end; Python's "$" also matches
    # before a final newline, which would let "als\n" past the name pattern.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _required(
    validator: Any, required: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    # As jsonschema's, but keeps the missing property as validator_value for the message.
    if not validator.is_type(instance, "object"):
        return
    for prop in required:
        if prop not in instance:
            yield ValidationError(f"{prop!r} is a required property", validator_value=prop)


_Validator = extend(Draft202012Validator, {"pattern": _pattern, "required": _required})


def _load(name: str) -> dict:
    with (_SCHEMA_DIR / name).open(encoding="utf-8") as f:
        return json.load(f)


def _inline_refs(node: Any, docs: dict[str, dict]) -> Any:
    # Inlining the schema files' cross-file "$ref"s saves a reference lookup per list item,
    # and keeps every subschema on the extended class (a "$ref" target's "$schema" would not).
    if isinstance(node, dict):
        if set(node) == {"$ref"} and node["$ref"] in docs:
            return _inline_refs(docs[node["$ref"]], docs)
        return {k: _inline_refs(v, docs) for k, v in node.items() if k not in ("$schema", "$id")}
    if isinstance(node, list):
        return [_inline_refs(v, docs) for v in node]
    return node


def _build_validators() -> dict[Kind, Any]:
    docs = {name: _load(name) for name in set(_SCHEMA_FILES.values())}
    validators = {}
    for kind, name in _SCHEMA_FILES.items():
        schema = _inline_refs(docs[name], docs)
        if kind in HEADCOUNT_NAMES:
            schema["properties"]["name"]["enum"] = list(HEADCOUNT_NAMES[kind])
        validators[kind] = _Validator(schema)
    return validators


# Two validators per schema: jsonschema_rs answers "valid?" for every message, about 60 times
# faster (it was a quarter of the bridge's time, docs/benchmarks.md); jsonschema explains a
# refusal in the cloud's words, and has the last word when the two disagree.
_VALIDATORS = _build_validators()
_FAST = {kind: jsonschema_rs.Draft202012Validator(v.schema) for kind, v in _VALIDATORS.items()}
_MAX_META_ITEMS: int = _load("meta.json")["maxItems"]


def _definition_check(name: str) -> tuple[Any, dict] | None:
    """The validator for a known meta name's value and the context its errors quote."""
    # Look up before the cache: caching unknown names would let senders grow it without bound.
    return _compile_definition(name) if name in meta_definitions.DEFINITIONS else None


@cache
def _compile_definition(name: str) -> tuple[Any, dict] | None:
    found = meta_definitions.value_schema(name)
    if found is None:
        return None
    schema, context = found
    return _Validator(schema), context


def _meta_items(kind: Kind, data: Any) -> Iterator[tuple[tuple[Any, ...], dict]]:
    """(path prefix, item) for each meta item whose value a definition constrains."""
    items: Iterator[tuple[tuple[Any, ...], Any]]
    if kind is Kind.META and isinstance(data, list):
        items = (((i,), item) for i, item in enumerate(data[:_MAX_META_ITEMS]))
    elif kind is Kind.META_ITEM:
        items = iter((((), data),))
    else:
        return
    for prefix, item in items:
        if isinstance(item, dict) and "value" in item and isinstance(item.get("name"), str):
            yield prefix, item


# Known meta names (bounded by the definitions file) -> their value's fast validator, or
# None when the definition constrains no value; filled on first use of each name.
_FAST_DEFINITIONS: dict[str, Any] = {}
_UNSEEN = object()


def _fast_definition(name: str) -> Any:
    """The fast validator of a known meta name's value; None for names it does not constrain."""
    # get, not try/except KeyError: a name the definitions do not know (not cached) would
    # raise on every message, which was a tenth of the bridge's ingest time.
    check = _FAST_DEFINITIONS.get(name, _UNSEEN)
    if check is not _UNSEEN:
        return check
    if name not in meta_definitions.DEFINITIONS:  # unknown names are not cached: unbounded
        return None
    compiled = _compile_definition(name)
    check = None if compiled is None else jsonschema_rs.Draft202012Validator(compiled[0].schema)
    _FAST_DEFINITIONS[name] = check
    return check


def _is_valid(kind: Kind, data: Any) -> bool:
    """Whether ``data`` passes its kind's schema (and its meta definitions), quickly.

    Per message, so the items are walked in a plain loop (the generator ``validate`` shares
    was a sixth of this function's time).
    """
    try:
        if not _FAST[kind].is_valid(data):
            return False
        if kind is Kind.META and isinstance(data, list):
            items = data[:_MAX_META_ITEMS]
        elif kind is Kind.META_ITEM:
            items = [data]
        else:
            return True
        for item in items:
            if isinstance(item, dict) and "value" in item and isinstance(item.get("name"), str):
                check = _fast_definition(item["name"])
                if check is not None and not check.is_valid(item["value"]):
                    return False
    except (ValueError, OverflowError, TypeError):  # nothing the Rust side can represent
        return False  # validate() decides
    return True


# --- cloud-shaped errors ---------------------------------------------------------------------


def _position(path: Any) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else str(p) for p in path]
    return "/".join(parts) if parts else "(root)"


def _preview(value: Any, limit: int = VALUE_PREVIEW_CHARS) -> str:
    """JSON for a value, cut at ``limit`` characters without encoding all of a huge value."""
    if isinstance(value, str) and len(value) > limit:
        return json.dumps(value[:limit])[:limit] + "…"
    out: list[str] = []
    size = 0
    # The pure-Python iterencode is lazy, so a huge container stops costing once cut.
    for chunk in json.JSONEncoder(default=repr).iterencode(value):
        out.append(chunk)
        size += len(chunk)
        if size > limit:
            return "".join(out)[:limit] + "…"
    return "".join(out)


# Keywords holding subschemas: a context quotes the element's own constraints, not its children's.
_SUBSCHEMA_KEYWORDS = frozenset(
    {
        "properties", "patternProperties", "additionalProperties", "propertyNames",
        "dependentSchemas", "items", "prefixItems", "contains", "allOf", "anyOf", "oneOf",
        "not", "if", "then", "else", "unevaluatedItems", "unevaluatedProperties",
    }
)  # fmt: skip


def _context(schema: Any) -> dict:
    """The violated element's schema as the cloud quotes it: no $-keywords, description or children."""
    if not isinstance(schema, dict):
        return {}
    return {
        k: v
        for k, v in schema.items()
        if not k.startswith("$")
        and k != "description"
        and (k not in _SUBSCHEMA_KEYWORDS or isinstance(v, bool))
    }


def _offending_value(error: ValidationError) -> Any:
    if error.validator == "required":
        return error.validator_value
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        return [k for k in error.instance if k not in known]
    return error.instance


def _envelope(error: ValidationError, context: dict | None, data: Any) -> dict:
    reason = MESSAGES.get(str(error.validator), _DEFAULT_MESSAGE)
    message = (
        f"Invalid payload due to {reason}.  Position: {_position(error.path)}."
        f" Value: {_preview(_offending_value(error))}."
    )
    if context is None:
        context = _context(error.schema)
    return {"error": {"message": message, "context": context}, "data": data}


def _sort_key(error: ValidationError) -> tuple:
    # Shallowest first (most is wrong there), then document order, then non-weak keywords.
    path = tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in error.path)
    return (len(path), path, error.validator in _WEAK)


def validate(kind: Kind, data: Any) -> list[dict]:
    """Errors as the cloud's rejected envelopes, best first (at most ``MAX_ERRORS``); [] if valid.

    ``data`` is parsed JSON; ``parse`` bounds its depth, other callers must not pass deeper data.
    """
    kind = Kind(kind)
    found: list[tuple[ValidationError, dict | None]] = [
        (error, None) for error in islice(_VALIDATORS[kind].iter_errors(data), MAX_ERRORS)
    ]
    for prefix, item in _meta_items(kind, data):
        if len(found) >= MAX_ERRORS:
            break
        check = _definition_check(item["name"])
        if check is None:
            continue
        for error in islice(check[0].iter_errors(item["value"]), MAX_ERRORS - len(found)):
            error.path.extendleft(reversed((*prefix, "value")))
            found.append((error, check[1]))
    found.sort(key=lambda pair: _sort_key(pair[0]))
    return [_envelope(error, context, data) for error, context in found]


# --- parsing raw bytes -----------------------------------------------------------------------


def raw_preview(raw: bytes) -> str:
    """A bounded, decodable copy of raw bytes for logs and the dashboard."""
    if len(raw) <= RAW_PREVIEW_BYTES:
        return raw.decode("utf-8", errors="replace")
    head = raw[:RAW_PREVIEW_BYTES].decode("utf-8", errors="replace")
    return f"{head}… ({len(raw)} bytes)"


def parse(kind: Kind, raw: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> Payload | Malformed:
    """Decode and validate one message's bytes for ``kind``; never raises on any bytes."""
    kind = Kind(kind)
    raw = bytes(raw)
    if len(raw) > max_bytes:
        return Malformed(kind, f"too large: {len(raw)} bytes > {max_bytes}", raw_preview(raw))
    try:
        data = safe_json.loads(raw, MAX_DEPTH)
    except safe_json.Refused as exc:
        return Malformed(kind, str(exc), raw_preview(raw))
    if _is_valid(kind, data):
        return Payload(kind, data)
    errors = validate(kind, data)
    if not errors:
        return Payload(kind, data)
    return Malformed(
        kind, "schema: " + errors[0]["error"]["message"], raw_preview(raw), tuple(errors)
    )
