"""Hostile and invalid input wherever people or files hand the dashboard text: the inventory
import, every form, every query parameter.

Whatever arrives, the answer names what was wrong (the field, or the inventory path) and is
never a server error; a refused import or form writes nothing, except that refused actions are
audited by design. The happy paths and the first bad values of each are in test_inventory,
test_actions, test_alarms, test_activity and test_inspector; these are the cases they leave
out: NUL characters, lone surrogates, huge numbers, ids of the wrong kind or building, dates at
the ends of the calendar in far-off time zones, SQL-ish and very long strings, repeated and
undecodable parameters.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from dashboard.contract import rejections
from dashboard.contract.topics import Kind, Scope
from dashboard.live import layer
from dashboard.models import (
    ActionAttempt,
    AlarmEvent,
    Area,
    Building,
    Device,
    FaultAlarm,
    MalformedPayload,
    RejectedPayload,
    Space,
)
from tests import seed
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


# --- the inventory import ------------------------------------------------------------------------

_NAMESPACE = uuid.UUID("a3c1e7d2-95b4-4f6e-8d0a-2b7c9e4f1a60")


def gid(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, name))


def inventory() -> dict[str, Any]:
    """Two small buildings, good in every entry."""
    return {
        "buildings": [
            {
                "id": gid("hq"),
                "name": "Headquarters",
                "spaces": [{"id": gid("hq/office"), "name": "Office", "capacity": 40}],
                "areas": [{"id": gid("hq/lobby"), "name": "Lobby", "space": gid("hq/office")}],
                "devices": [
                    {"id": gid(f"hq/lamp-{n}"), "name": f"Lamp {n}", "space": gid("hq/office")}
                    for n in range(3)
                ],
            },
            {"id": gid("annex"), "name": "Annex", "devices": []},
        ]
    }


def snapshot() -> dict[str, list[tuple[Any, ...]]]:
    """Every inventory row, versions included."""
    return {
        "buildings": list(Building.objects.order_by("id").values_list()),
        "spaces": list(Space.objects.order_by("id").values_list()),
        "areas": list(Area.objects.order_by("id").values_list()),
        "devices": list(Device.objects.order_by("id").values_list()),
    }


def put(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit putting ``value`` at a dotted path with [n] indexes."""

    def edit(data: dict[str, Any]) -> None:
        keys = [
            int(k) if k.isdigit() else k for k in path.replace("]", "").replace("[", ".").split(".")
        ]
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


# (what is wrong, the edit or the whole text, the one line the operator reads)
BAD_INVENTORIES = [
    pytest.param(
        put("buildings[0].devices[1].name", "Lamp\x001"),
        "buildings[0].devices[1].name: must not contain NUL characters",
        id="nul-in-a-device-name",
    ),
    pytest.param(
        put("buildings[1].name", "Annex \ud83d"),
        "buildings[1].name: not valid Unicode text (a lone surrogate)",
        id="lone-surrogate-in-a-building-name",
    ),
    pytest.param(
        put("buildings[0].spaces[0].name", "\x00"),
        "buildings[0].spaces[0].name: must not contain NUL characters",
        id="a-name-that-is-only-nul",
    ),
    pytest.param(
        put("buildings[0].spaces[0].capacity", 10**30),
        "buildings[0].spaces[0].capacity: must be at most 2147483647",
        id="capacity-past-every-database",
    ),
    pytest.param(
        put("buildings[0].spaces[0].capacity", float("inf")),
        "buildings[0].spaces[0].capacity: must be a whole number >= 0",
        id="capacity-infinity",
    ),
    pytest.param(
        put("buildings[0].spaces[0].capacity", float("nan")),
        "buildings[0].spaces[0].capacity: must be a whole number >= 0",
        id="capacity-nan",
    ),
    pytest.param(
        put("buildings[0].devices[2].id", ""),
        "buildings[0].devices[2].id: not a UUID: ''",
        id="empty-id",
    ),
    pytest.param(
        put("buildings[0].devices[2].id", "' OR 1=1; DROP TABLE dashboard_device; --"),
        'buildings[0].devices[2].id: not a UUID: "\' OR 1=1; DROP TABLE dashboard_device; --"',
        id="sql-ish-id",
    ),
    pytest.param(
        put("buildings[0].devices[2].id", "x" * 100_000),
        f"buildings[0].devices[2].id: not a UUID: {'x' * 57 + '...'!r}",
        id="very-long-id",
    ),
    pytest.param(
        put("buildings[0].areas[0].space", {"id": gid("hq/office")}),
        "buildings[0].areas[0].space: expected a UUID string, got object",
        id="space-reference-an-object",
    ),
    pytest.param(
        put("buildings[1]", None),
        "buildings[1]: expected an object, got null",
        id="a-building-that-is-null",
    ),
    pytest.param(
        put("buildings[0].devices[0]", ["Lamp 0"]),
        "buildings[0].devices[0]: expected an object, got array",
        id="a-device-that-is-a-list",
    ),
    pytest.param(
        '{"buildings": [{"id": "' + gid("hq") + '", "name": "HQ\x00"}]}',
        "$: not JSON (line 1, column 74: Invalid control character at)",
        id="raw-nul-byte-in-the-text",
    ),
    pytest.param(
        '{"buildings": [], "capacity": ' + "9" * 5000 + "}",
        "$: not JSON (Exceeds the limit (4300 digits) for integer string conversion: value has"
        " 5000 digits; use sys.set_int_max_str_digits() to increase the limit)",
        id="number-with-5000-digits",
    ),
    pytest.param(
        '{"buildings": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "$: not JSON (maximum recursion depth exceeded while decoding a JSON array from a"
        " unicode string)",
        id="nested-100000-deep",
    ),
    pytest.param("", "$: not JSON (line 1, column 1: Expecting value)", id="empty-file"),
    pytest.param(
        "\ufeff\ufeff{}",
        "$: not JSON (line 1, column 1: Unexpected UTF-8 BOM (decode using utf-8-sig))",
        id="two-byte-order-marks",
    ),
]


@pytest.fixture
def imported(tmp_path: Path) -> Path:
    """The good inventory already imported; returns where to write the next file."""
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(inventory()))
    call_command("import_inventory", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    return path


@pytest.mark.parametrize(("bad", "message"), BAD_INVENTORIES)
def test_an_inventory_with_one_bad_entry_among_good_ones_saves_nothing(
    imported: Path, bad: Callable[[dict[str, Any]], None] | str, message: str
) -> None:
    before = snapshot()
    if isinstance(bad, str):
        text = bad
    else:
        data = inventory()
        data["buildings"][0]["devices"][0]["name"] = "Reception lamp"  # a good edit
        data["buildings"][0]["devices"].append({"id": gid("hq/new"), "name": "New lamp"})
        bad(data)
        text = json.dumps(data, ensure_ascii=True)  # \u escapes, as exports write them
    imported.write_text(text, encoding="utf-8", errors="surrogatepass")

    err = io.StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("import_inventory", str(imported), stdout=io.StringIO(), stderr=err)

    assert err.getvalue().splitlines() == [message]
    assert str(refused.value) == "inventory not imported (1 error); nothing was changed"
    assert snapshot() == before


def test_every_name_that_is_odd_but_valid_text_is_imported_as_it_is(imported: Path) -> None:
    data = inventory()
    odd = [
        "x" * 200,  # the longest allowed
        "<script>alert(1)</script>",
        "' OR '1'='1' --",
        "\u202eRTL override \U0001f4a1 lamp",
        "tab\tand\nnewline",
    ]
    data["buildings"][0]["devices"] = [
        {"id": gid(f"odd/{n}"), "name": name} for n, name in enumerate(odd)
    ]
    imported.write_text(json.dumps(data))
    call_command("import_inventory", str(imported), stdout=io.StringIO(), stderr=io.StringIO())
    assert [Device.objects.get(id=gid(f"odd/{n}")).name for n in range(len(odd))] == odd


def test_a_directory_instead_of_a_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=f"^cannot read {re.escape(str(tmp_path))}: Is a dir"):
        call_command("import_inventory", str(tmp_path), stdout=io.StringIO(), stderr=io.StringIO())


# --- the pages and their query parameters ---------------------------------------------------------


@pytest.fixture
def root(db: None) -> User:
    return User.objects.create_superuser("root", password=PASSWORD)


@pytest.fixture
def lived_in(hq: dict[str, Any], people: Any) -> dict[str, Any]:
    """Headquarters with one of everything a filter can narrow: an attempt, an alarm, a
    refusal, a malformed message."""
    building, device = hq[Scope.BUILDING], hq[Scope.DEVICE]
    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    ActionAttempt.objects.create(
        building_id=building,
        user=people.operator,
        username="olivia",
        target_type="device",
        target_id=device,
        target_name="Lamp 1",
        topic=f"devices/{device}/actions",
        payload=json.dumps(seed.DEVICE_ACTION),
        outcome=ActionAttempt.SEEN,
    )
    alarm = FaultAlarm.objects.create(
        building_id=building,
        device_id=device,
        type="high_temperature",
        level="info",
        priority=255,
        payload=seed.DEVICE_FAULT_ALARM,
        first_seen=at,
        last_seen=at,
    )
    message = seed.REJECTED["error"]["message"]
    RejectedPayload.objects.create(
        building_id=building,
        device_id=device,
        topic=f"devices/{device}/meta/rejected",
        kind=Kind.REJECTED_META,
        message=message,
        signature=rejections.signature(Kind.REJECTED_META, message),
        context=seed.REJECTED["error"]["context"],
        data=seed.REJECTED["data"],
        received_at=at,
    )
    MalformedPayload.objects.create(
        building_id=building,
        topic=f"devices/{device}/meta",
        kind=Kind.META,
        reason="not JSON",
        raw="{",
        received_at=at,
    )
    return {**hq, "alarm": alarm}


def body(response: Any) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return content.decode()


# What a query parameter may hold, from people editing the address or from scripts.
HOSTILE_VALUES = [
    "\x00",
    "lamp\x00",
    "9" * 40,
    "-1",
    "1e309",
    "NaN",
    "00000000-0000-0000-0000-000000000000",
    "{" + str(uuid.uuid4()) + "}",
    "' OR '1'='1' --",
    "%_\\",
    "<script>alert(1)</script>",
    "\u202e\U0001f4a1",
    "x" * 100_000,
    "2026-02-30",
]
# And for dates, the ends of the calendar, plain and with the furthest offsets.
HOSTILE_DATES = [
    "0001-01-01",
    "9999-12-31",
    "0001-01-01T00:00",
    "9999-12-31T23:59:59",
    "0001-01-01T00:00+14:00",
    "9999-12-31T23:00-12:00",
]

# (page, parameter, the label its "Ignored" message names, or None for parameters that are
# taken as they come). Each page is also fetched as its export where it has one.
PARAMETERS = [
    ("building", "space", None),
    ("building", "q", None),
    ("activity", "user", "User"),
    ("activity", "target", "Target"),
    ("activity", "outcome", "Outcome"),
    ("activity", "from", "From"),
    ("activity", "to", "To"),
    ("activity", "page", None),
    ("alarms", "level", "Level"),
    ("alarms", "state", "State"),
    ("alarms", "device", "Device"),
    ("alarms", "space", "Space"),
    ("alarms", "page", None),
    ("inspector", "device", "Device"),
    ("inspector", "kind", "Topic kind"),
    ("inspector", "from", "From"),
    ("inspector", "to", "To"),
    ("inspector", "q", "Message"),
    ("inspector", "signature", "Group"),
    ("inspector", "page", None),
]
EXPORTS = {
    "activity": ["activity.csv"],
    "inspector": ["rejected/export.json", "rejected/export.csv"],
}
PATHS = {"building": "", "activity": "activity/", "alarms": "alarms/", "inspector": "rejected/"}


# Dates also in the time zones furthest from UTC: 14 hours ahead and 11 behind.
CASES = [
    pytest.param(page, param, label, zone, id=f"{page}-{param}" + (f"-{zone}" if zone else ""))
    for page, param, label in PARAMETERS
    for zone in (
        [None, "Pacific/Kiritimati", "Pacific/Pago_Pago"] if param in ("from", "to") else [None]
    )
]


@pytest.mark.parametrize(("page", "param", "label", "zone"), CASES)
def test_no_query_parameter_value_breaks_a_page_or_an_export(
    lived_in, root, settings, page, param, label, zone
):
    if zone:
        settings.TIME_ZONE = zone
    client = Client()
    client.force_login(root)
    base = f"/buildings/{lived_in[Scope.BUILDING]}/"
    urls = [base + PATHS[page]] + [base + export for export in EXPORTS.get(page, [])]
    dates = HOSTILE_DATES if param in ("from", "to") else []
    broken = []
    for value in dates if zone else HOSTILE_VALUES + dates:
        for url in urls:
            response = client.get(url, {param: value})
            if response.status_code != 200:
                broken.append((url, value[:40], response.status_code))
                continue
            text = body(response)
            if label and "\x00" in value and url.endswith("/") and f"Ignored “{label}”" not in text:
                broken.append((url, value[:40], "no word about the ignored value"))
            if url.endswith(".json"):
                json.loads(text)
    assert broken == []


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("user=olivia&user=%00&user=", 200),  # repeated: the last one counts
        ("page=2&page=1&page=x&page=", 200),
        ("from=2026-03-01&from=2026-03-02&to=2026-03-01&to=2026-03-03", 200),
        ("q=%ff%fe%fd", 200),  # not UTF-8
        ("q=%ZZ&level=%&space=%%%", 200),  # not even percent-encoding
        ("outcome[]=seen&user[$ne]=x&__proto__=1", 200),
        ("&&&=&==&", 200),
        ("q=a" + "&q=a" * 998, 200),  # with the login's next: DATA_UPLOAD_MAX_NUMBER_FIELDS
        ("q=a" + "&q=a" * 1000, 400),  # more is a bad request where parameters are read
    ],
)
def test_repeated_and_undecodable_parameters_break_no_page(lived_in, root, query, status):
    client = Client()
    client.force_login(root)
    base = f"/buildings/{lived_in[Scope.BUILDING]}/"
    device = f"devices/{lived_in[Scope.DEVICE]}/"
    paths = ["", device, *PATHS.values(), *(e for v in EXPORTS.values() for e in v)]
    for path in paths:
        response = client.get(f"{base}{path}?{query}")
        # The device page reads no parameter, so it never counts them.
        assert response.status_code == (200 if path == device else status), (path, query[:40])
        body(response)
    assert Client().get(f"/accounts/login/?next=%00&{query}").status_code == status


@pytest.mark.parametrize(
    "path",
    [
        "/buildings/not-a-uuid/",
        "/buildings/{b}/devices/{s}/",  # a space's id where a device's goes
        "/buildings/{other}/devices/{d}/",  # a device of another building
        "/buildings/{b}/alarms/99999999999999999999999/acknowledge/",
        "/buildings/{b}/rejected/export.xml",
        "/buildings/{b}/rejected/export.%00",
        "/buildings/{b}%00/",
    ],
)
def test_unknown_and_malformed_ids_in_addresses_are_not_found(lived_in, root, people, path):
    client = Client()
    client.force_login(root)
    other = Building.objects.get(name="Elsewhere").id
    url = path.format(
        b=lived_in[Scope.BUILDING], s=lived_in[Scope.SPACE], d=lived_in[Scope.DEVICE], other=other
    )
    method = client.post if url.endswith("acknowledge/") else client.get
    assert method(url).status_code == 404


# --- the action form ------------------------------------------------------------------------------


@pytest.fixture
def published(monkeypatch) -> list[dict[str, Any]]:
    """What the bridge was asked to publish (nothing, in every case here)."""
    asked: list[dict[str, Any]] = []

    async def record(building_id: Any, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        asked.append(request)
        return {"ok": True, "reason": ""}

    monkeypatch.setattr(layer, "request_publish", record)
    return asked


def action_form(form_target: str, **values: Any) -> dict[str, Any]:
    """What the browser posts for ``form_target``'s action form (Dim to 40 %), with changes."""
    prefix = form_target.replace(":", "-")
    data = {
        "target": form_target,
        "idempotency_key": uuid.uuid4().hex,
        "action": "dim",
        "level": "40",
        "transition_time": "5",
        **values,
    }
    return {f"{prefix}-{name}": value for name, value in data.items() if value is not None}


# (field, value posted, the label in the answer, the field's message); None leaves it out.
BAD_ACTION_FIELDS = [
    ("action", "explode", "Action", "Select a valid choice. explode is not one"),
    ("action", "", "Action", "This field is required."),
    pytest.param(
        "action",
        "\x00",
        "Action",
        "Select a valid choice.",
        # The refusal's audit row quotes the posted value: on PostgreSQL a NUL in it was a 500.
        id="action-NUL",
    ),
    ("action", "dim" * 10_000, "Action", "Select a valid choice."),
    ("action", "<script>alert(1)</script>", "Action", "Select a valid choice. &lt;script&gt;"),
    ("level", "1e5", "Level", "Enter a whole number."),
    ("level", "9" * 5000, "Level", "Enter a whole number."),
    ("level", "40.5", "Level", "Enter a whole number."),
    ("level", "NaN", "Level", "Enter a whole number."),
    ("level", "\x00", "Level", "Enter a whole number."),
    ("transition_time", None, "Transition time", "This field is required."),
    ("transition_time", "-1", "Transition time", "greater than or equal to 0."),
    ("transition_time", "3601", "Transition time", "less than or equal to 3600."),
    ("transition_time", "1e309", "Transition time", "Enter a whole number."),
    ("transition_time", "99999999999999999999", "Transition time", "less than or equal to 3600."),
    ("idempotency_key", None, "Idempotency key", "This field is required."),
    ("idempotency_key", "k" * 41, "Idempotency key", "at most 40 characters"),
    ("idempotency_key", "\x00", "Idempotency key", "Null characters are not allowed."),
]


@pytest.mark.parametrize(("field", "value", "label", "message"), BAD_ACTION_FIELDS)
def test_a_bad_action_field_is_refused_by_name_audited_and_never_published(
    hq, people, published, field, value, label, message
):
    client = Client(HTTP_HX_REQUEST="true")
    client.force_login(people.operator)
    target = f"space:{hq[Scope.SPACE]}"
    response = client.post(
        f"/buildings/{hq[Scope.BUILDING]}/actions/", action_form(target, **{field: value})
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert f"<strong>{label}</strong>: " in html and message in html
    [attempt] = ActionAttempt.objects.all()
    assert attempt.outcome == ActionAttempt.REFUSED
    assert attempt.reason.startswith(f"invalid: {field}: ")
    assert attempt.topic == "" and published == []


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        "space:not-a-uuid",
        "space:\x00",
        "space:{device}",  # a device's id as a space
        "device:{space}",
        "space:{elsewhere}",  # a space of another building
        "building:{building}",
        "space:" + "0" * 100_000,
    ],
)
def test_an_action_for_a_target_outside_the_building_is_not_found_and_writes_nothing(
    hq, people, published, target
):
    elsewhere = Space.objects.create(building=Building.objects.get(name="Elsewhere"), name="Far")
    if target is not None:
        target = target.format(
            device=hq[Scope.DEVICE],
            space=hq[Scope.SPACE],
            elsewhere=elsewhere.id,
            building=hq[Scope.BUILDING],
        )
    client = Client(HTTP_HX_REQUEST="true")
    client.force_login(people.operator)
    data = action_form(f"space:{hq[Scope.SPACE]}", target=target)
    response = client.post(f"/buildings/{hq[Scope.BUILDING]}/actions/", data)
    assert response.status_code == 404
    assert not ActionAttempt.objects.exists() and published == []


# --- acknowledging and clearing alarms ------------------------------------------------------------


@pytest.fixture
def bridge_told(monkeypatch) -> list[Any]:
    calls: list[Any] = []

    async def record(building_id: Any, changes: list[dict[str, Any]]) -> None:
        calls.append(changes)

    monkeypatch.setattr(layer, "alarms_changed", record)
    return calls


def alarms_after(client: Client, response: Any) -> str:
    assert response.status_code == 303
    return client.get(response["Location"]).content.decode()


@pytest.mark.parametrize(
    ("step", "note", "message"),
    [
        ("acknowledge", "\x00", "Nothing changed: the note is not valid. Null characters are not"),
        ("clear", "on it\x00", "Nothing changed: the note is not valid. Null characters are not"),
        ("acknowledge", "x" * 100_000, "Nothing changed: the note is not valid. Ensure this"),
    ],
)
def test_a_bad_note_changes_no_alarm_and_says_why(
    lived_in, people, bridge_told, step, note, message
):
    alarm = lived_in["alarm"]
    client = Client()
    client.force_login(people.operator)
    url = f"/buildings/{lived_in[Scope.BUILDING]}/alarms/{alarm.id}/{step}/"
    html = alarms_after(client, client.post(url, {"note": note}))
    assert message in html
    alarm.refresh_from_db()
    assert alarm.state == FaultAlarm.OPEN and not AlarmEvent.objects.exists()
    assert bridge_told == []


def test_bulk_selections_that_are_not_alarms_of_the_building_are_ignored_by_count(
    lived_in, people, bridge_told
):
    theirs = FaultAlarm.objects.create(
        building=Building.objects.get(name="Elsewhere"),
        type="theirs",
        level="info",
        priority=1,
        payload={},
        first_seen=datetime(2026, 3, 2, tzinfo=UTC),
        last_seen=datetime(2026, 3, 2, tzinfo=UTC),
    )
    selected = ["abc", "-1", "0", "1e3", "9" * 30, "\x00", "' OR 1=1 --", "", str(theirs.id)]
    client = Client()
    client.force_login(people.operator)
    url = f"/buildings/{lived_in[Scope.BUILDING]}/alarms/acknowledge/"
    html = alarms_after(client, client.post(url, {"alarm": selected, "note": "all of them"}))
    assert "Ignored 9 selected entries: not an alarm of this building." in html
    assert FaultAlarm.objects.filter(state=FaultAlarm.OPEN).count() == 2
    assert not AlarmEvent.objects.exists() and bridge_told == []

    too_many = [str(n) for n in range(1, 502)]
    html = alarms_after(client, client.post(url, {"alarm": too_many}))
    assert "Nothing changed: select at most 500 alarms at once." in html
    assert not AlarmEvent.objects.exists()


@pytest.mark.parametrize(
    "next_url", ["/\x00", "/buildings/\r\nSet-Cookie: x=1", "/" + "x" * 100_000, "\x00/evil"]
)
def test_a_hostile_next_address_never_breaks_the_redirect(lived_in, people, bridge_told, next_url):
    client = Client()
    client.force_login(people.operator)
    alarm = lived_in["alarm"]
    url = f"/buildings/{lived_in[Scope.BUILDING]}/alarms/{alarm.id}/acknowledge/"
    response = client.post(url, {"next": next_url})
    assert response.status_code == 303
    assert "\n" not in response["Location"] and "\x00" not in response["Location"]
    alarm.refresh_from_db()
    assert alarm.state == FaultAlarm.ACKNOWLEDGED  # the note was fine; only next was ignored


# --- the payload checker and the login form -------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "payload", "shown"),
    [
        (None, "[]", "This field is required."),
        ("", "[]", "This field is required."),
        ("\x00", "[]", "Select a valid choice."),
        ("rejected_meta", "[]", "Select a valid choice. rejected_meta is not one"),
        ("meta' OR '1'='1", "[]", "Select a valid choice."),
        ("meta", None, "This field is required."),
        ("meta", "\x00", "Null characters are not allowed."),
        ("meta", '[{"name": "a\\u0000b", "value": 1}]', "The cloud would refuse this"),
        ("meta", "[" * 100_000 + "]" * 100_000, "The cloud would refuse it before looking"),
        ("meta", "9" * 5000, "The cloud would refuse it before looking"),
        ("meta", "1e999999", "The cloud would refuse"),
        ("meta", '{"name": "\\ud800", "value": "\\udfff"}', "The cloud would refuse"),
        ("head_count", '{"name": "headcount", "value": 1e309}', "The cloud would refuse"),
    ],
)
def test_the_payload_checker_answers_every_kind_and_payload_in_words(
    hq, people, kind, payload, shown
):
    client = Client()
    client.force_login(people.support)
    data = {
        name: value for name, value in (("kind", kind), ("payload", payload)) if value is not None
    }
    response = client.post(f"/buildings/{hq[Scope.BUILDING]}/rejected/check/", data)
    assert response.status_code == 200
    assert shown in response.content.decode()


@pytest.mark.parametrize(
    ("username", "password", "shown"),
    [
        ("\x00", PASSWORD, "Null characters are not allowed."),
        ("victor\x00", PASSWORD, "Null characters are not allowed."),
        ("x" * 100_000, PASSWORD, "didn&#x27;t match"),
        ("victor", "x" * 100_000, "didn&#x27;t match"),
        ("' OR '1'='1' --", "' OR '1'='1' --", "didn&#x27;t match"),
        ("", "", "This field is required."),
    ],
)
def test_the_login_form_refuses_hostile_credentials_in_words(people, username, password, shown):
    response = Client().post("/accounts/login/", {"username": username, "password": password})
    assert response.status_code == 200  # a login that worked would redirect
    assert shown in response.content.decode()


def test_the_admin_search_survives_hostile_text(root, lived_in):
    client = Client()
    client.force_login(root)
    for value in ("\x00", "' OR '1'='1' --", "%_\\", "x" * 10_000, "\u202e"):
        for model in ("building", "device", "faultalarm", "rejectedpayload", "actionattempt"):
            response = client.get(f"/admin/dashboard/{model}/?q={quote(value)}")
            assert response.status_code == 200, (model, value[:20])


@pytest.fixture(autouse=True)
def _no_cache_between_tests(settings) -> Iterator[None]:
    # The login throttle counts failures in the cache: each test starts from none.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": uuid.uuid4().hex,
        }
    }
    yield
