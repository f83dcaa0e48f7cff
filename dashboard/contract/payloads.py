"""Parse and validate MQTT payloads against the Gooee contract, never raising on bad bytes.

Errors take the cloud's rejected-envelope shape, so the emulator can publish them as the cloud
would and the dashboard can show what the cloud would say. Pure Python: no Django import.
"""

from __future__ import annotations

import json
import math
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


@dataclass(frozen=True, slots=True)
class MetaDefinition:
    """How the cloud names and shows one device meta value."""

    name: str
    display_name: str
    unit: str | None
    precision: int | None
    value_labels: dict[str, str] | None  # {"true": "On", "false": "Off"} for enum labels


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


def _load_definitions() -> dict[str, dict]:
    with (_HERE / "meta_definitions.json").open(encoding="utf-8") as f:
        return json.load(f)["device_meta"]


_DEFINITIONS = _load_definitions()


def _to_2020_12(schema: dict) -> dict:
    # One cloud definition (power_factor) is draft 4: "exclusiveMinimum": true beside "minimum".
    schema = dict(schema)
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(exclusive), bool) and schema.pop(exclusive) and bound in schema:
            schema[exclusive] = schema.pop(bound)
    return schema


def _definition_check(name: str) -> tuple[Any, dict] | None:
    """The validator for a known meta name's value and the context its errors quote."""
    # Look up before the cache: caching unknown names would let senders grow it without bound.
    return _compile_definition(name) if name in _DEFINITIONS else None


@cache
def _compile_definition(name: str) -> tuple[Any, dict] | None:
    definition = _DEFINITIONS[name]
    if definition.get("json_schema") is None:
        return None
    schema = definition["json_schema"]
    context = {**schema, "title": definition.get("display_name") or name}
    return _Validator(_to_2020_12(schema)), context


def _meta_items(kind: Kind, data: Any) -> Iterator[tuple[tuple[Any, ...], dict]]:
    """(path prefix, item) for each meta item whose value a definition constrains."""
    if kind is Kind.META and isinstance(data, list):
        items = (((i,), item) for i, item in enumerate(data[:_MAX_META_ITEMS]))
    elif kind is Kind.META_ITEM:
        items = iter((((), data),))
    else:
        return
    for prefix, item in items:
        if isinstance(item, dict) and "value" in item and isinstance(item.get("name"), str):
            yield prefix, item


@cache
def _fast_definition(name: str) -> Any:
    return jsonschema_rs.Draft202012Validator(_compile_definition(name)[0].schema)


def _is_valid(kind: Kind, data: Any) -> bool:
    """Whether ``data`` passes its kind's schema (and its meta definitions), quickly."""
    try:
        if not _FAST[kind].is_valid(data):
            return False
        for _prefix, item in _meta_items(kind, data):
            known = _definition_check(item["name"]) is not None
            if known and not _fast_definition(item["name"]).is_valid(item["value"]):
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


class _Refused(ValueError):
    """Raised from inside json.loads for what the cloud would not accept as JSON."""


def _no_constant(name: str) -> Any:
    raise _Refused(f"non-finite number {name}")


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise _Refused("non-finite number " + text[:20])
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


def _shape_problem(data: Any, check_strings: bool) -> str | None:
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
        at_limit = depth >= MAX_DEPTH  # their container children would be too deep
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
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Malformed(kind, "not UTF-8", raw_preview(raw))
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        return Malformed(kind, "nested too deeply", raw_preview(raw))
    except json.JSONDecodeError as exc:
        reason = f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        return Malformed(kind, reason, raw_preview(raw))
    except _Refused as exc:
        return Malformed(kind, f"not JSON: {exc}", raw_preview(raw))
    except ValueError:  # an integer over Python's 4300-digit conversion limit
        return Malformed(kind, "not JSON: number too long", raw_preview(raw))
    problem = _shape_problem(data, _SURROGATE_ESCAPE.search(raw) is not None)
    if problem is not None:
        return Malformed(kind, problem, raw_preview(raw))
    if _is_valid(kind, data):
        return Payload(kind, data)
    errors = validate(kind, data)
    if not errors:
        return Payload(kind, data)
    return Malformed(
        kind, "schema: " + errors[0]["error"]["message"], raw_preview(raw), tuple(errors)
    )


# --- meta definitions for display ------------------------------------------------------------


def _make_definition(name: str, entry: dict) -> MetaDefinition:
    labels = entry.get("value_display_name")
    if isinstance(labels, dict) and labels.get("type") == "enum":
        value_labels = {k: v for k, v in labels.items() if k != "type"}
    else:
        value_labels = None  # "range" labels are kept in the JSON but not interpreted here
    return MetaDefinition(
        name=name,
        display_name=entry.get("display_name") or name,
        unit=entry.get("unit_of_measure"),
        precision=entry.get("decimal_precision"),
        value_labels=value_labels,
    )


_META_DEFINITIONS: dict[str, MetaDefinition] = {
    name: _make_definition(name, entry) for name, entry in _DEFINITIONS.items()
}


def meta_definition(name: str) -> MetaDefinition | None:
    """The cloud's definition of a device meta name, or None for a name it does not define."""
    return _META_DEFINITIONS.get(name)


def format_value(definition: MetaDefinition | None, value: Any) -> str:
    """A meta value as plain text: numbers at the definition's precision, booleans labelled."""
    if isinstance(value, bool):
        text = "true" if value else "false"
        if definition is not None and definition.value_labels:
            return definition.value_labels.get(text, text)
        return text
    if value is None:
        return ""
    if isinstance(value, int | float):
        precision = definition.precision if definition is not None else None
        try:
            if precision is None or not math.isfinite(value):
                return str(value)
            if isinstance(value, int):  # exact: float() overflows on huge ints
                return str(value) + ("." + "0" * precision if precision > 0 else "")
            text = f"{value:.{precision}f}"
        except (ValueError, OverflowError):  # ints beyond the 4300-digit conversion limit
            return "(number too long)"
        return text[1:] if text.startswith("-") and float(text) == 0 else text
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=repr)
