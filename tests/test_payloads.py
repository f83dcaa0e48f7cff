"""Payload parsing and validation against the Gooee broker contract (no Django needed)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from dashboard.contract import meta_definitions, payloads
from dashboard.contract.meta_definitions import format_value, meta_definition
from dashboard.contract.payloads import (
    MAX_ERRORS,
    MAX_PAYLOAD_BYTES,
    RAW_PREVIEW_BYTES,
    Malformed,
    Payload,
    parse,
    validate,
)
from dashboard.contract.topics import Kind
from tests import seed

DASHBOARD = Path(payloads.__file__).resolve().parent
# The preview plus its "… (N bytes)" marker.
RAW_BOUND = RAW_PREVIEW_BYTES + 40

TS = "2016-08-09T20:00:47.539000Z"
DEVICE = "8551e830-eab3-4de4-84d4-bd9ff6615b7f"

# Every example payload of the contract (tests/seed.py), with the kind its topic carries.
DIM_DEVICE = seed.DEVICE_ACTION
OFF_SPACE = seed.SPACE_ACTION
FAULT_ALARM = seed.DEVICE_FAULT_ALARM
_untyped = seed.without_type
CONTRACT_EXAMPLES: list[tuple[str, Kind, object]] = [
    (f"{scope.segment}/{kind}", kind, payload)
    for scope, kind, _, payload in seed.EXAMPLES
    if kind not in (Kind.REJECTED_META, Kind.REJECTED_FAULT_ALARM)
]
META_NEW = seed.REJECTED["data"]
# The contract's rejected example, verbatim.
REJECTED_EXAMPLE_JSON = r"""
{
  "error": {
    "message": "Invalid payload due to regex pattern not matching.  Position: [0]/name. Value: \"Meta_New\".",
    "context": {
      "type": "string",
      "title": "Name",
      "pattern": "^(~?)(?!.*__.*)[a-z][a-z0-9_]+$",
      "minLength": 1,
      "maxLength": 100
    }
  },
  "data": [
    {
      "name": "Meta_New",
      "display_name": "Meta New",
      "unit_of_measure": "Meters",
      "value": 10
    }
  ]
}
"""


def _msg(reason: str, position: str, value: str) -> str:
    return f"Invalid payload due to {reason}.  Position: {position}. Value: {value}."


# --- the contract's examples -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "kind", "data"), CONTRACT_EXAMPLES, ids=[e[0] for e in CONTRACT_EXAMPLES]
)
def test_contract_example_is_valid(topic: str, kind: Kind, data: object) -> None:
    assert validate(kind, data) == []
    result = parse(kind, json.dumps(data).encode())
    assert result == Payload(kind, data)


def test_rejected_example_is_reproduced_exactly() -> None:
    expected = json.loads(REJECTED_EXAMPLE_JSON)
    errors = validate(Kind.META, META_NEW)
    assert errors == [expected]
    # Byte for byte, key order included, as the cloud would publish it.
    assert json.dumps(errors[0]) == json.dumps(expected)


def test_rejected_example_is_a_valid_rejected_envelope() -> None:
    raw = REJECTED_EXAMPLE_JSON.encode()
    for kind in (Kind.REJECTED_META, Kind.REJECTED_FAULT_ALARM):
        assert parse(kind, raw) == Payload(kind, json.loads(REJECTED_EXAMPLE_JSON))


def test_parse_reports_the_rejected_example_as_the_cloud_would() -> None:
    result = parse(Kind.META, json.dumps(META_NEW).encode())
    assert isinstance(result, Malformed)
    expected = json.loads(REJECTED_EXAMPLE_JSON)
    assert result.reason == "schema: " + expected["error"]["message"]
    assert result.errors == (expected,)
    assert result.raw == json.dumps(META_NEW)


# --- one failing case per rule -----------------------------------------------------------------

FAULT = {k: v for k, v in FAULT_ALARM.items() if k != "id"}

FAILURES: list[tuple[str, Kind, object, str, dict]] = [
    # (id, kind, data, first message, context subset)
    (
        "meta-missing-value",
        Kind.META,
        [{"name": "temperature"}],
        _msg("missing required property", "[0]", '"value"'),
        {"required": ["name", "value"]},
    ),
    ("meta-not-a-list", Kind.META, {"name": "als", "value": 1}, _msg("type mismatch", "(root)", '{"name": "als", "value": 1}'), {"type": "array"}),
    ("meta-empty", Kind.META, [], _msg("too few items", "(root)", "[]"), {"minItems": 1}),
    ("meta-name-type", Kind.META_ITEM, {"name": 5, "value": 1}, _msg("type mismatch", "name", "5"), {"title": "Name"}),
    ("meta-name-newline", Kind.META, [{"name": "als\n", "value": 1}], _msg("regex pattern not matching", "[0]/name", '"als\\n"'), {"title": "Name"}),
    ("meta-name-double-underscore", Kind.META_ITEM, {"name": "a__b", "value": 1}, _msg("regex pattern not matching", "name", '"a__b"'), {"title": "Name"}),
    ("meta-bad-timestamp", Kind.META, [{"name": "als", "value": 1, "timestamp": "2016-08-09 20:00:47"}], _msg("regex pattern not matching", "[0]/timestamp", '"2016-08-09 20:00:47"'), {"title": "Timestamp"}),
    ("meta-timestamp-month-13", Kind.META_ITEM, {"name": "als", "value": 1, "timestamp": "2016-13-09T20:00:47Z"}, _msg("regex pattern not matching", "timestamp", '"2016-13-09T20:00:47Z"'), {"title": "Timestamp"}),
    ("meta-display-name-type", Kind.META_ITEM, {"name": "als", "value": 1, "display_name": 3}, _msg("type mismatch", "display_name", "3"), {"title": "Display Name"}),
    ("fault-priority-256", Kind.FAULT_ALARM, {**FAULT, "priority": 256}, _msg("value above maximum", "priority", "256"), {"title": "Priority", "maximum": 255}),
    ("fault-priority-negative", Kind.FAULT_ALARM, {**FAULT, "priority": -1}, _msg("value below minimum", "priority", "-1"), {"title": "Priority", "minimum": 0}),
    ("fault-priority-type", Kind.FAULT_ALARM, {**FAULT, "priority": "high"}, _msg("type mismatch", "priority", '"high"'), {"type": "integer"}),
    ("fault-missing-level", Kind.FAULT_ALARM, {k: v for k, v in FAULT.items() if k != "level"}, _msg("missing required property", "(root)", '"level"'), {"title": "Fault Alarm"}),
    ("fault-level-uppercase", Kind.FAULT_ALARM, {**FAULT, "level": "INFO"}, _msg("regex pattern not matching", "level", '"INFO"'), {"title": "Level"}),
    ("fault-bad-device", Kind.FAULT_ALARM, {**FAULT, "device": "not-a-uuid"}, _msg("regex pattern not matching", "device", '"not-a-uuid"'), {"title": "Device"}),
    ("fault-notes-too-long", Kind.FAULT_ALARM, {**FAULT, "notes": "n" * 2001}, _msg("string too long", "notes", '"' + "n" * 199 + "…"), {"maxLength": 2000}),
    ("action-dim-101", Kind.ACTION, {**DIM_DEVICE, "value": {"level": 101}}, _msg("value above maximum", "value/level", "101"), {"title": "Level", "maximum": 100}),
    ("action-dim-without-level", Kind.ACTION, {**DIM_DEVICE, "value": {"transition_time": 5}}, _msg("missing required property", "value", '"level"'), {"title": "Value"}),
    ("action-off-with-level", Kind.ACTION, {**OFF_SPACE, "value": {"transition_time": 1, "level": 5}}, _msg("unexpected property", "value", '["level"]'), {"additionalProperties": False}),
    ("action-negative-transition", Kind.ACTION, {**OFF_SPACE, "value": {"transition_time": -1}}, _msg("value below minimum", "value/transition_time", "-1"), {"title": "Transition Time"}),
    ("action-bad-target-id", Kind.ACTION, {**DIM_DEVICE, "target_id": "8551e830"}, _msg("regex pattern not matching", "target_id", '"8551e830"'), {"title": "Target ID"}),
    ("action-target-type", Kind.ACTION, {**DIM_DEVICE, "target_type": "building"}, _msg("value not allowed", "target_type", '"building"'), {"enum": ["device", "space"]}),
    ("action-bad-type", Kind.ACTION, {**DIM_DEVICE, "type": "Dim!"}, _msg("regex pattern not matching", "type", '"Dim!"'), {"title": "Type"}),
    ("action-bad-created", Kind.ACTION, {**DIM_DEVICE, "created": "yesterday"}, _msg("regex pattern not matching", "created", '"yesterday"'), {"title": "Created"}),
    ("action-missing-type", Kind.ACTION, _untyped(DIM_DEVICE), _msg("missing required property", "(root)", '"type"'), {"title": "Action"}),
    ("typed-action-bad-target-id", Kind.TYPED_ACTION, {**_untyped(DIM_DEVICE), "target_id": "x"}, _msg("regex pattern not matching", "target_id", '"x"'), {"title": "Target ID"}),
    ("headcount-negative", Kind.HEAD_COUNT, {"name": "headcount", "value": -1}, _msg("value below minimum", "value", "-1"), {"title": "Value"}),
    ("headcount-fraction", Kind.HEADCOUNT_IN, {"name": "headcount_in", "value": 2.5}, _msg("type mismatch", "value", "2.5"), {"type": "integer"}),
    ("headcount-string", Kind.HEADCOUNT_OUT, {"name": "headcount_out", "value": "x"}, _msg("type mismatch", "value", '"x"'), {"type": "integer"}),
    ("headcount-other-topic-name", Kind.HEADCOUNT_IN, {"name": "headcount", "value": 1}, _msg("value not allowed", "name", '"headcount"'), {"enum": ["headcount_in"]}),
    ("head-count-in-name", Kind.HEAD_COUNT, {"name": "headcount_in", "value": 1}, _msg("value not allowed", "name", '"headcount_in"'), {"enum": ["headcount", "head_count"]}),
    ("rejected-without-error", Kind.REJECTED_META, {"data": []}, _msg("missing required property", "(root)", '"error"'), {"title": "Rejected"}),
    ("rejected-message-type", Kind.REJECTED_FAULT_ALARM, {"error": {"message": 1, "context": {}}, "data": {}}, _msg("type mismatch", "error/message", "1"), {"title": "Message"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "kind", "data", "message", "context"), FAILURES, ids=[f[0] for f in FAILURES]
)
def test_rule_violation(case: str, kind: Kind, data: object, message: str, context: dict) -> None:
    errors = validate(kind, data)
    assert errors, "expected a violation"
    first = errors[0]
    assert set(first) == {"error", "data"}
    assert first["data"] is data
    assert first["error"]["message"] == message
    assert context.items() <= first["error"]["context"].items()
    assert not any(key.startswith("$") for key in first["error"]["context"])
    result = parse(kind, json.dumps(data).encode())
    assert isinstance(result, Malformed)
    assert result.reason == "schema: " + message
    assert result.errors == tuple(errors)


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        (Kind.META_ITEM, {"name": "als", "value": 1, "timestamp": "2016-08-09T20:00:47+02:00"}),
        (Kind.META_ITEM, {"name": "als", "value": 1, "timestamp": "2016-08-09T20:00:47Z"}),
        (Kind.META_ITEM, {"name": "~private_meta", "value": [1, 2, 3]}),
        (Kind.META_ITEM, {"name": "als", "value": 1, "future_field": {"x": 1}}),
        (Kind.HEAD_COUNT, {"name": "head_count", "value": 0}),
        (Kind.ACTION, {**DIM_DEVICE, "type": "on", "value": {}}),
        (Kind.ACTION, {**DIM_DEVICE, "value": {"level": 0.5}}),
        (Kind.FAULT_ALARM, {**FAULT, "priority": 0}),
    ],
)
def test_allowed_variants(kind: Kind, data: object) -> None:
    assert validate(kind, data) == []


def test_errors_are_best_first_and_all_reported() -> None:
    data = [{"name": "als", "value": -1}, {"name": "Bad", "value": 1}, {"name": "ok_name"}]
    messages = [e["error"]["message"] for e in validate(Kind.META, data)]
    assert messages == [
        _msg("missing required property", "[2]", '"value"'),
        _msg("value below minimum", "[0]/value", "-1"),
        _msg("regex pattern not matching", "[1]/name", '"Bad"'),
    ]


def test_error_count_is_bounded() -> None:
    data = [{}] * 5000
    errors = validate(Kind.META, data)
    assert 1 <= len(errors) <= MAX_ERRORS
    assert errors[0]["error"]["message"].startswith("Invalid payload due to too many items.")


def test_long_values_are_truncated_in_messages() -> None:
    huge = {"priority": list(range(100_000))}
    message = validate(Kind.FAULT_ALARM, {**FAULT, **huge})[0]["error"]["message"]
    assert message.startswith(_msg("type mismatch", "priority", "[0, 1, 2")[:-1][:60])
    assert len(message) < 300


# --- meta definitions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "reason", "context"),
    [
        (
            "als",
            -1,
            "value below minimum",
            {"type": "number", "minimum": 0, "maximum": 20000, "title": "ALS"},
        ),
        ("als", 20001, "value above maximum", {"maximum": 20000, "title": "ALS"}),
        ("onoff", "yes", "type mismatch", {"type": "boolean", "title": "On Off"}),
        ("dim", 101, "value above maximum", {"maximum": 100, "title": "Dim"}),
        ("power_factor", 0, "value below minimum", {"title": "Power Factor"}),
        ("fan_mode", "Turbo", "value not allowed", {"title": "Fan Mode"}),
    ],
)
def test_meta_definition_violation(name: str, value: object, reason: str, context: dict) -> None:
    value_json = json.dumps(value)
    listed = validate(
        Kind.META, [{"name": "temperature", "value": 1}, {"name": name, "value": value}]
    )
    assert [e["error"]["message"] for e in listed] == [_msg(reason, "[1]/value", value_json)]
    assert context.items() <= listed[0]["error"]["context"].items()
    single = validate(Kind.META_ITEM, {"name": name, "value": value})
    assert [e["error"]["message"] for e in single] == [_msg(reason, "value", value_json)]
    assert isinstance(
        parse(Kind.META, json.dumps([{"name": name, "value": value}]).encode()), Malformed
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("als", 0),
        ("als", 20000),
        ("onoff", True),
        ("power_factor", 0.5),  # the draft-4 "exclusiveMinimum": true must not mean "> 1"
        ("power_factor", 1),
        ("fan_mode", "High"),
        ("firmware_version", {"anything": "goes"}),  # defined without a json_schema
        ("my_integrator_meta", "any value"),  # unknown names are the integrator's own
    ],
)
def test_meta_definition_allows(name: str, value: object) -> None:
    assert validate(Kind.META_ITEM, {"name": name, "value": value}) == []


def test_meta_definition_lookup() -> None:
    als = meta_definition("als")
    assert als is not None
    assert (als.display_name, als.unit, als.precision, als.value_labels) == ("ALS", None, 0, None)
    onoff = meta_definition("onoff")
    assert onoff is not None and onoff.value_labels == {"false": "Off", "true": "On"}
    temperature = meta_definition("temperature")
    assert temperature is not None and (temperature.unit, temperature.precision) == ("°C", 2)
    co2 = meta_definition("air_co2")  # the cloud gives it no display name
    assert co2 is not None and co2.display_name == "air_co2"
    assert meta_definition("no_such_meta") is None


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("temperature", 87.4, "87.40"),
        ("temperature", 87, "87.00"),
        ("als", 87.6, "88"),
        ("als", 87, "87"),
        ("temperature", -0.001, "0.00"),
        ("onoff", True, "On"),
        ("onoff", False, "Off"),
        ("aerator_pump_status", True, "true"),  # boolean without labels
        ("fan_mode", "High", "High"),
        ("temperature", None, ""),
        ("temperature", 10**200, "1" + "0" * 200 + ".00"),  # float() would overflow
        ("temperature", float("inf"), "inf"),
        ("rgb", [255, 0, 10], "[255, 0, 10]"),
        (None, 3.14159, "3.14159"),
        (None, True, "true"),
        (None, {"a": "°"}, '{"a": "°"}'),
    ],
)
def test_format_value(name: str | None, value: object, text: str) -> None:
    definition = meta_definition(name) if name else None
    assert format_value(definition, value) == text


# --- parse: bytes that must not get through ----------------------------------------------------


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b'[{"name": "caf\xe9", "value": 1}]', "not UTF-8"),
        (b"", "not JSON: Expecting value at line 1 column 1"),
        (b"not json", "not JSON: Expecting value at line 1 column 1"),
        (b'[{"name": "als", "value": 1}', "not JSON: Expecting ',' delimiter at line 1 column 29"),
        (b"NaN", "not JSON: non-finite number NaN"),
        (b'[{"name": "als", "value": -Infinity}]', "not JSON: non-finite number -Infinity"),
        (b"[1e309]", "not JSON: non-finite number 1e309"),
        (b"[" + b"9" * 5000 + b"]", "not JSON: number too long"),
        (b"x" * (1 << 20), f"too large: 1048576 bytes > {MAX_PAYLOAD_BYTES}"),
        (b"x" * (10 << 20), f"too large: 10485760 bytes > {MAX_PAYLOAD_BYTES}"),
        (_nested(100_000), "nested too deeply"),
        (_nested(payloads.MAX_DEPTH + 1), "nested too deeply"),
        (b'[{"name": "als", "value": "\\ud800"}]', "lone surrogate in a string"),
        (b'[{"name": "als", "\\udfff": 1, "value": 1}]', "lone surrogate in a string"),
        (b'"\\ud800"', "lone surrogate in a string"),
    ],
    ids=lambda v: v[:30] if isinstance(v, bytes) else v,
)
def test_parse_refuses(raw: bytes, reason: str) -> None:
    result = parse(Kind.META, raw)
    assert isinstance(result, Malformed)
    assert (result.kind, result.reason, result.errors) == (Kind.META, reason, ())
    assert len(result.raw) <= RAW_BOUND


def test_parse_raw_copy_is_marked_when_cut() -> None:
    raw = b"\xff" + b"y" * (1 << 20)
    result = parse(Kind.META, raw)
    assert isinstance(result, Malformed)
    assert result.raw.startswith("\ufffdyyy")
    assert result.raw.endswith(f"… ({len(raw)} bytes)")
    assert len(result.raw) <= RAW_BOUND


def test_parse_honours_a_caller_limit() -> None:
    data = [{"name": "temperature", "value": 20.5, "display_name": "x" * 100}] * 400
    raw = json.dumps(data).encode()
    assert len(raw) > 10_000
    assert isinstance(parse(Kind.META, raw, max_bytes=10_000), Malformed)
    assert parse(Kind.META, raw, max_bytes=len(raw)) == Payload(Kind.META, data)
    big = b"[" + b"1," * (5 << 20) + b"1]"  # a 10 MB list, let through the size check
    result = parse(Kind.META, big, max_bytes=len(big))
    assert isinstance(result, Malformed)
    assert result.reason.startswith("schema: Invalid payload due to too many items.")
    assert len(result.raw) <= RAW_BOUND


def test_parse_accepts_what_is_deep_enough_and_surrogate_pairs() -> None:
    value: object = 1
    for _ in range(payloads.MAX_DEPTH - 3):  # list > item > value > ... stays within the bound
        value = {"v": value}
    data = [{"name": "my_nested_meta", "value": value, "display_name": "smile \U0001f600"}]
    raw = json.dumps(data).encode()  # ensure_ascii: the emoji travels as a surrogate pair
    assert b"\\ud83d\\ude00" in raw
    assert parse(Kind.META, raw) == Payload(Kind.META, data)


def test_parse_accepts_memoryview_and_bytearray() -> None:
    raw = json.dumps({"name": "headcount", "value": 3}).encode()
    expected = Payload(Kind.HEAD_COUNT, {"name": "headcount", "value": 3})
    assert parse(Kind.HEAD_COUNT, bytearray(raw)) == expected
    assert parse(Kind.HEAD_COUNT, memoryview(raw)) == expected


# --- parse never raises, for any bytes and any JSON --------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=40,
)
META_LIKE = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(
                ["als", "dim", "onoff", "power_factor", "temperature", "Bad", "x_y"]
            )
            | st.text(max_size=12)
        },
        optional={
            "value": JSON_VALUES,
            "timestamp": st.text(max_size=30),
            "display_name": JSON_VALUES,
        },
    ),
    max_size=4,
)
SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(kind: Kind, raw: bytes) -> Payload | Malformed:
    result = parse(kind, raw)
    assert isinstance(result, Payload | Malformed)
    assert result.kind == kind
    if isinstance(result, Malformed):
        assert isinstance(result.reason, str) and result.reason
        assert len(result.raw) <= RAW_BOUND
        if result.reason.startswith("schema: "):
            assert (
                result.errors and result.reason == "schema: " + result.errors[0]["error"]["message"]
            )
            json.dumps(list(result.errors))  # the envelopes can be published as they are
        else:
            assert result.errors == ()
    else:
        assert validate(kind, result.data) == []
    return result


@pytest.mark.parametrize("kind", list(Kind))
@SLOW
@given(raw=st.binary(max_size=300))
def test_parse_never_raises_on_bytes(kind: Kind, raw: bytes) -> None:
    _check(kind, raw)


@pytest.mark.parametrize("kind", list(Kind))
@SLOW
@given(data=JSON_VALUES)
def test_parse_never_raises_on_json(kind: Kind, data: object) -> None:
    result = _check(kind, json.dumps(data).encode())
    if isinstance(result, Payload):
        assert result.data == data


@SLOW
@given(data=META_LIKE)
def test_meta_like_payloads(data: list) -> None:
    result = _check(Kind.META, json.dumps(data).encode())
    finite = "NaN" not in json.dumps(data) and "Infinity" not in json.dumps(data)
    if isinstance(result, Payload):
        assert result.data == data
    elif finite and result.reason.startswith("schema: "):
        assert result.errors[0]["data"] == data


@SLOW
@given(
    value=st.floats(allow_nan=False) | st.integers(),
    name=st.sampled_from(["als", "dim", "temperature"]),
)
def test_meta_values_follow_their_definition(value: float, name: str) -> None:
    result = parse(Kind.META_ITEM, json.dumps({"name": name, "value": value}).encode())
    bounds = {"als": (0, 20000), "dim": (0, 100), "temperature": (-math.inf, math.inf)}[name]
    ok = math.isfinite(value) and bounds[0] <= value <= bounds[1]
    assert isinstance(result, Payload) == ok


# --- the data files ----------------------------------------------------------------------------


def test_schema_files_are_valid_2020_12() -> None:
    files = sorted((DASHBOARD / "schemas").glob("*.json"))
    assert {f.name for f in files} == {
        "meta.json", "meta_item.json", "action.json", "typed_action.json",
        "fault_alarm.json", "headcount.json", "rejected.json",
    }  # fmt: skip
    for path in files:
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema.get("description")
        Draft202012Validator.check_schema(schema)


def test_typed_action_is_action_without_type() -> None:
    action = json.loads((DASHBOARD / "schemas/action.json").read_text(encoding="utf-8"))
    typed = json.loads((DASHBOARD / "schemas/typed_action.json").read_text(encoding="utf-8"))
    assert typed["properties"] == {k: v for k, v in action["properties"].items() if k != "type"}
    assert typed["required"] == [r for r in action["required"] if r != "type"]
    assert "allOf" not in typed


def test_meta_definitions_copy() -> None:
    copy = json.loads((DASHBOARD / "meta_definitions.json").read_text(encoding="utf-8"))
    assert set(copy) == {"source", "device_meta", "area_meta_names"}
    assert "gooee-meta-definitions.json" in copy["source"]
    assert len(copy["device_meta"]) == 612
    allowed = {
        "display_name",
        "unit_of_measure",
        "decimal_precision",
        "json_schema",
        "value_display_name",
    }
    for entry in copy["device_meta"].values():
        assert set(entry) <= allowed and {"display_name", "json_schema"} <= set(entry)
        if entry["json_schema"] is not None:
            Draft202012Validator.check_schema(meta_definitions.to_2020_12(entry["json_schema"]))
    assert copy["device_meta"]["als"]["json_schema"] == {
        "maximum": 20000,
        "minimum": 0,
        "type": "number",
    }


def test_module_is_pure_python_and_self_contained() -> None:
    source = Path(payloads.__file__).read_text(encoding="utf-8")
    assert "shared" not in source
    code = (
        "import sys, dashboard.contract.payloads; "
        "sys.exit(any(m.split('.')[0] == 'django' for m in sys.modules))"
    )
    root = DASHBOARD.parent
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0


# --- the fast validator agrees with the reference one --------------------------------------

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["", "als", "als\n", "2026-01-01T00:00:00Z", "on", "off", "dim", "1.5"])
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
DEFINITION_NAMES = sorted(meta_definitions.DEFINITIONS)


def _mutations_of(example: Any) -> st.SearchStrategy[Any]:
    """The example with one field (at any depth) replaced by arbitrary JSON, or dropped."""
    if isinstance(example, dict) and example:
        key = st.sampled_from(sorted(example))
        return st.one_of(
            st.tuples(key, JSON_VALUES).map(lambda kv: {**example, kv[0]: kv[1]}),
            key.map(lambda k: {x: v for x, v in example.items() if x != k}),
            st.tuples(key, st.deferred(lambda: JSON_VALUES)).flatmap(
                lambda kv: _mutations_of(example[kv[0]]).map(lambda v: {**example, kv[0]: v})
            ),
        )
    if isinstance(example, list) and example:
        return st.tuples(st.integers(0, len(example) - 1), JSON_VALUES).map(
            lambda iv: [iv[1] if i == iv[0] else x for i, x in enumerate(example)]
        )
    return JSON_VALUES


EXAMPLES = {
    Kind.META: seed.DEVICE_META,
    Kind.META_ITEM: seed.DEVICE_META_ITEM,
    Kind.ACTION: seed.without_type(seed.DEVICE_ACTION),
    Kind.TYPED_ACTION: seed.DEVICE_ACTION,
    Kind.FAULT_ALARM: seed.DEVICE_FAULT_ALARM,
    Kind.HEAD_COUNT: seed.headcount("headcount", 3),
    Kind.HEADCOUNT_IN: seed.headcount("headcount_in", 3),
    Kind.HEADCOUNT_OUT: seed.headcount("headcount_out", 3),
    Kind.REJECTED_META: seed.REJECTED,
    Kind.REJECTED_FAULT_ALARM: seed.REJECTED,
}


def _reference_is_valid(kind: Kind, data: Any) -> bool:
    return not payloads.validate(kind, data)


@pytest.mark.parametrize("kind", list(EXAMPLES), ids=str)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_fast_check_agrees_with_the_reference_validator(kind: Kind, data: Any) -> None:
    message = data.draw(st.one_of(_mutations_of(EXAMPLES[kind]), JSON_VALUES))
    assert payloads._is_valid(kind, message) == _reference_is_valid(kind, message), message


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(DEFINITION_NAMES), value=JSON_VALUES)
def test_the_fast_check_agrees_on_every_meta_definitions_values(name: str, value: Any) -> None:
    item = {"name": name, "value": value, "timestamp": "2026-01-01T00:00:00Z"}
    assert payloads._is_valid(Kind.META_ITEM, item) == _reference_is_valid(Kind.META_ITEM, item)
