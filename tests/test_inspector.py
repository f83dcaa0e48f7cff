"""The rejected-payload inspector, as Sam from support uses it to help the building's integrators.

The cloud refuses what an integrator publishes and says why on ``.../rejected`` topics; Sam
finds the refusals here, grouped by mistake, filters and exports them, sees what the
dashboard itself could not read, and checks a corrected payload before anyone publishes it.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from dashboard.contract import rejections
from dashboard.contract.topics import Kind, Scope
from dashboard.live import fragment_engine
from dashboard.live.state import Rejection
from dashboard.live.store import write_batch
from dashboard.models import Building, Device, MalformedPayload, RejectedPayload
from tests import seed

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
MORNING = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
META_NEW_MESSAGE = seed.REJECTED["error"]["message"]
NAME_CONTEXT = seed.REJECTED["error"]["context"]


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def inspector_url(building: uuid.UUID, suffix: str = "") -> str:
    return f"/buildings/{building}/rejected/{suffix}"


def name_error(value: str, position: int = 0) -> str:
    """The cloud's message for a meta name in the wrong case, as for the seed's Meta_New."""
    return (
        "Invalid payload due to regex pattern not matching.  "
        f'Position: [{position}]/name. Value: "{value}".'
    )


def reject(
    building: uuid.UUID,
    device: uuid.UUID | None,
    message: str = META_NEW_MESSAGE,
    *,
    kind: str = Kind.REJECTED_META,
    topic: str | None = None,
    context: Any = NAME_CONTEXT,
    data: Any = None,
    at: datetime = MORNING,
) -> RejectedPayload:
    """A refusal as the bridge stores it."""
    if topic is None:
        suffix = "meta/rejected" if kind == Kind.REJECTED_META else "fault_alarms/rejected"
        topic = f"devices/{device}/{suffix}" if device else f"buildings/{building}/{suffix}"
    return RejectedPayload.objects.create(
        building_id=building,
        device_id=device,
        topic=topic,
        kind=kind,
        message=message,
        signature=rejections.signature(kind, message),
        context=context,
        data=seed.REJECTED["data"] if data is None else data,
        received_at=at,
    )


def page_of(client: Client, url: str, **params: str) -> str:
    response = client.get(url, params)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def group_rows(page: str) -> list[str]:
    return re.findall(r'<tr class="rejection-group[^"]*".*?</tr>', page, re.S)


def entries(page: str) -> list[str]:
    return re.findall(r'<li class="rejection-entry.*?</li>', page, re.S)


def marked(fragment: str) -> list[str]:
    """The highlighted text of a pretty-printed payload, unescaped."""
    return [html.unescape(m) for m in re.findall(r"<mark>(.*?)</mark>", fragment, re.S)]


def streamed(response: Any) -> str:
    return b"".join(response.streaming_content).decode()


def ten_devices(building: uuid.UUID) -> list[Device]:
    return [Device.objects.create(building_id=building, name=f"Sensor {i:02}") for i in range(10)]


# --- who may look -----------------------------------------------------------------------------


def test_the_inspector_is_for_the_buildings_support_staff_only(hq, people):
    building = hq[Scope.BUILDING]
    urls = (
        inspector_url(building),
        inspector_url(building, "export.json"),
        inspector_url(building, "export.csv"),
        inspector_url(building, "check/"),
    )
    for url in urls:
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
        for someone in (people.viewer, people.operator, people.outsider):
            assert logged_in(someone).get(url).status_code == 403, (someone, url)
        assert logged_in(people.support).get(url).status_code == 200, url
    refused = logged_in(people.viewer).post(
        inspector_url(building, "check/"), {"kind": "meta", "payload": "[]"}
    )
    assert refused.status_code == 403


def test_an_administrator_may_inspect_and_an_unknown_building_is_not_found(hq, people):
    admin = User.objects.create_superuser("ada", password="x")
    client = logged_in(admin)
    assert client.get(inspector_url(hq[Scope.BUILDING])).status_code == 200
    nowhere = uuid.uuid4()
    for suffix in ("", "export.json", "check/"):
        assert client.get(inspector_url(nowhere, suffix)).status_code == 404
    support = logged_in(people.support)
    assert support.get(inspector_url(hq[Scope.BUILDING], "export.xlsx")).status_code == 404


# --- the seed's refusal, end to end -----------------------------------------------------------


def test_the_seeds_refusal_is_stored_grouped_and_shown_with_meta_new_marked(hq, people):
    building, device = hq[Scope.BUILDING], hq[Scope.DEVICE]
    # As the bridge receives it on devices/<lamp>/meta/rejected and writes it.
    write_batch(
        [
            (
                building,
                Rejection(
                    f"devices/{device}/meta/rejected",
                    Kind.REJECTED_META,
                    device,
                    seed.REJECTED["error"]["message"],
                    seed.REJECTED["error"]["context"],
                    seed.REJECTED["data"],
                    MORNING,
                ),
            )
        ]
    )
    stored = RejectedPayload.objects.get()
    assert stored.signature == rejections.signature(Kind.REJECTED_META, META_NEW_MESSAGE)

    page = page_of(logged_in(people.support), inspector_url(building))
    [group] = group_rows(page)
    assert "1 device · 1 time" in group and "Lamp 1" in group
    assert "Position: [i]/name. Value: …" in group  # the value masked

    [entry] = entries(page)
    assert META_NEW_MESSAGE in html.unescape(entry)  # escaped as the fragment engine does
    assert "Lamp 1" in entry and str(device) in entry
    assert f"devices/{device}/meta/rejected" in entry
    assert "<dt>pattern</dt><dd><code>^(~?)(?!.*__.*)[a-z][a-z0-9_]+$</code></dd>" in entry
    assert "<dt>maxLength</dt><dd><code>100</code></dd>" in entry
    assert marked(entry) == ['    "name": "Meta_New",\n']
    data = re.search(r'<div class="rejection-data">.*?<pre class="json">(.*?)</pre>', entry, re.S)
    shown = html.unescape(re.sub(r"</?mark>", "", data.group(1)))
    # PostgreSQL's jsonb keeps keys in its own order, so compare the data, not the text.
    assert json.loads(shown) == seed.REJECTED["data"]
    assert 'datetime="2026-03-02T09:00:00+00:00"' in entry


def test_the_page_is_live_the_bridge_prepends_new_refusals_with_the_same_fragment(hq, people):
    building, device = hq[Scope.BUILDING], hq[Scope.DEVICE]
    page = page_of(logged_in(people.support), inspector_url(building))
    assert f'ws-connect="/ws/buildings/{building}/"' in page and 'hx-ext="ws"' in page
    assert '<ol id="rejected-live" class="rejected-live">' in page
    assert '<span id="page-status" class="page-status" role="status">' in page
    assert "No rejections yet." in page

    # What the bridge pushes, built from memory with the same entry() and fragment.
    pushed = fragment_engine.render(
        "dashboard/fragments/rejected_new.html",
        {
            "entries": [
                rejections.entry(
                    topic=f"devices/{device}/meta/rejected",
                    kind=Kind.REJECTED_META,
                    message=META_NEW_MESSAGE,
                    context=NAME_CONTEXT,
                    data=seed.REJECTED["data"],
                    received_at=MORNING,
                    device_id=device,
                    device_name="Lamp 1",
                    building_name="Headquarters",
                )
            ]
        },
    )
    assert 'hx-swap-oob="afterbegin:#rejected-live"' in pushed
    [entry] = entries(pushed)
    assert marked(entry) == ['    "name": "Meta_New",\n']

    # Stored, the same refusal renders the same entry on the page.
    reject(building, device)
    assert entries(page_of(logged_in(people.support), inspector_url(building))) == [entry]


def test_a_filtered_list_does_not_take_live_refusals_it_might_not_match(hq, people):
    building = hq[Scope.BUILDING]
    page = page_of(logged_in(people.support), inspector_url(building), q="pattern")
    assert 'id="rejected-live"' not in page
    assert "Live updates are off for a filtered list" in page
    assert 'ws-connect="/ws/buildings/' in page  # the connection status still shows


# --- grouping ---------------------------------------------------------------------------------


def test_fifty_refusals_from_ten_devices_with_one_mistake_are_one_group(hq, people):
    building = hq[Scope.BUILDING]
    sensors = ten_devices(building)
    for i in range(1, 51):
        reject(
            building,
            sensors[i % 10].id,
            name_error(f"Meta_N{i}", position=i % 3),
            data=[{"name": f"Meta_N{i}", "value": i}],
            at=MORNING + timedelta(minutes=i),
        )
    # A different mistake: a fault alarm's level of the wrong type, from the building itself.
    type_error = "Invalid payload due to type mismatch.  Position: level. Value: 3."
    for minute in (5, 70):
        reject(
            building,
            None,
            type_error,
            kind=Kind.REJECTED_FAULT_ALARM,
            context={"type": "string", "title": "Level"},
            data={**seed.BUILDING_FAULT_ALARM, "level": 3},
            at=MORNING + timedelta(minutes=minute),
        )

    page = page_of(logged_in(people.support), inspector_url(building))
    newest, names = group_rows(page)
    assert "Fault alarm" in newest and "the building · 2 times" in newest
    assert "Device meta" in names
    assert "10 devices · 50 times" in names
    assert "Position: [i]/name. Value: …" in names and "Meta_N" not in names
    assert "Sensor 00, Sensor 01" in names and "Sensor 09" in names and "more" not in names
    assert "2026-03-02 09:01:00 UTC" in names and "2026-03-02 09:50:00 UTC" in names
    signature = rejections.signature(Kind.REJECTED_META, name_error("Meta_N1"))
    assert f'href="?signature={signature}"' in names

    # Following the group's link lists exactly its 50 refusals.
    group = page_of(logged_in(people.support), inspector_url(building), signature=signature)
    assert '<span class="badge">50</span>' in group
    assert len(group_rows(group)) == 1 and "shown below" in group
    assert "Showing one group of errors only" in group


def test_a_group_names_a_few_devices_and_counts_the_rest(hq, people):
    building = hq[Scope.BUILDING]
    for i in range(13):
        device = Device.objects.create(building_id=building, name=f"Node {i:02}")
        reject(building, device.id, name_error(f"Node_{i}"))
    [group] = group_rows(page_of(logged_in(people.support), inspector_url(building)))
    assert "13 devices · 13 times" in group
    assert "Node 09 and 3 more" in group and "Node 10" not in group


# --- filters ----------------------------------------------------------------------------------


@pytest.fixture
def busy_morning(hq):
    """Lamp 1 sends bad meta names, Sensor 00 bad fault alarms, the building one bad alarm."""
    building, lamp = hq[Scope.BUILDING], hq[Scope.DEVICE]
    sensor = Device.objects.create(building_id=building, name="Sensor 00")
    reject(building, lamp, name_error("Meta_New"), at=MORNING)
    reject(building, lamp, name_error("CamelCase"), at=MORNING + timedelta(hours=2))
    reject(
        building,
        sensor.id,
        'Invalid payload due to missing required property.  Position: (root). Value: "type".',
        kind=Kind.REJECTED_FAULT_ALARM,
        at=MORNING + timedelta(hours=1),
    )
    reject(
        building,
        None,
        "Invalid payload due to value above maximum.  Position: priority. Value: 300.",
        kind=Kind.REJECTED_FAULT_ALARM,
        at=MORNING + timedelta(days=1),
    )
    return {"building": building, "lamp": lamp, "sensor": sensor.id}


def shown_messages(page: str) -> list[str]:
    return [
        html.unescape(m)
        for m in re.findall(r'<span class="rejection-text">(.*?)</span>', page, re.S)
    ]


def test_filters_narrow_the_groups_and_the_list(busy_morning, people):
    client = logged_in(people.support)
    url = inspector_url(busy_morning["building"])

    lamp = page_of(client, url, device=str(busy_morning["lamp"]))
    assert len(entries(lamp)) == 2 and len(group_rows(lamp)) == 1
    assert f'<option value="{busy_morning["lamp"]}" selected>Lamp 1</option>' in lamp

    alarms = page_of(client, url, kind="rejected_fault_alarm")
    assert len(entries(alarms)) == 2
    assert not [m for m in shown_messages(alarms) if "Meta_New" in m]

    building_only = page_of(client, url, device="building")
    [entry] = entries(building_only)
    assert "value above maximum" in entry and "Building <strong" in entry

    camel = page_of(client, url, q="camelcase")
    assert {m for m in shown_messages(camel)} == {
        name_error("CamelCase"),
        rejections.mask(name_error("CamelCase")),
    }

    morning = page_of(client, url, **{"from": "2026-03-02T09:30", "to": "2026-03-02T11:00"})
    assert len(entries(morning)) == 2
    assert not [m for m in shown_messages(morning) if "Meta_New" in m]
    assert 'value="2026-03-02T09:30"' in morning and 'value="2026-03-02T11:00"' in morning

    first_day = page_of(client, url, **{"from": "2026-03-02", "to": "2026-03-02"})
    assert len(entries(first_day)) == 3
    assert not [m for m in shown_messages(first_day) if "above maximum" in m]

    combined = page_of(client, url, device=str(busy_morning["lamp"]), q="meta_new")
    assert len(entries(combined)) == 1


def test_bad_filter_values_are_ignored_with_a_word_never_an_error(busy_morning, people):
    client = logged_in(people.support)
    url = inspector_url(busy_morning["building"])
    other = Device.objects.create(building=Building.objects.create(name="Other"), name="Theirs")
    for params, problem in (
        ({"device": "lamp"}, "Ignored “Device”"),
        ({"device": str(other.id)}, "Ignored “Device”"),
        ({"kind": "meta"}, "Ignored “Topic kind”"),
        ({"from": "yesterday"}, "Ignored “From”"),
        ({"to": "9999-12-31"}, "Ignored “To”: out of range"),
        ({"q": "x" * 500}, "Ignored “Message”"),
        ({"signature": "'; drop table"}, "Ignored “Group”"),
        ({"from": "2026-03-03", "to": "2026-03-02"}, "nothing can match"),
        ({"page": "-1"}, None),
    ):
        page = page_of(client, url, **params)
        if problem:
            assert html.escape(problem, quote=False) in page, params
    unfiltered = page_of(client, url, device="lamp")
    assert len(entries(unfiltered)) == 4 and 'id="rejected-live"' in unfiltered


# --- exports ----------------------------------------------------------------------------------


def test_the_filtered_set_exports_as_json_that_reads_back(busy_morning, people):
    client = logged_in(people.support)
    response = client.get(
        inspector_url(busy_morning["building"], "export.json"),
        {"device": str(busy_morning["lamp"])},
    )
    assert response["Content-Type"] == "application/json"
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="rejected-{busy_morning["building"]}.json"'
    )
    records = json.loads(streamed(response))
    assert [r["message"] for r in records] == [name_error("Meta_New"), name_error("CamelCase")]
    first = records[0]
    assert set(first) == {
        "received_at", "topic", "kind", "device_id", "device_name", "message", "context", "data",
        "time_zone",
    }  # fmt: skip
    assert first["received_at"] == "2026-03-02T09:00:00+00:00" and first["time_zone"] == "UTC"
    assert first["device_id"] == str(busy_morning["lamp"]) and first["device_name"] == "Lamp 1"
    assert first["context"] == NAME_CONTEXT and first["data"] == seed.REJECTED["data"]

    empty = client.get(inspector_url(busy_morning["building"], "export.json"), {"q": "nothing"})
    assert json.loads(streamed(empty)) == []


def test_the_csv_export_has_a_row_per_refusal_and_no_formulas(busy_morning, people):
    building = busy_morning["building"]
    reject(
        building,
        busy_morning["lamp"],
        '=HYPERLINK("http://evil.example","click")',
        data=-1,
        context={"pattern": "@SUM(A1)"},
        at=MORNING + timedelta(days=2),
    )
    response = logged_in(people.support).get(inspector_url(building, "export.csv"))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="rejected-{building}.csv"'
    rows = list(csv.DictReader(io.StringIO(streamed(response))))
    assert len(rows) == 5
    assert rows[0]["message"] == name_error("Meta_New")
    assert json.loads(rows[0]["data"]) == seed.REJECTED["data"]
    assert json.loads(rows[0]["context"]) == NAME_CONTEXT
    assert rows[3]["device_name"] == "" and rows[3]["topic"].startswith("buildings/")
    hostile = rows[4]
    assert hostile["message"] == "'" + '=HYPERLINK("http://evil.example","click")'
    assert hostile["data"] == "'-1"
    assert hostile["context"] == '{"pattern":"@SUM(A1)"}'  # starts with "{": harmless


@pytest.mark.django_db(transaction=True)
async def test_served_by_daphne_the_exports_stream_asynchronously(
    async_client, busy_morning, people
):
    await async_client.aforce_login(people.support)
    url = inspector_url(busy_morning["building"])
    for fmt in ("json", "csv"):
        response = await async_client.get(f"{url}export.{fmt}", {"kind": "rejected_meta"})
        assert response.status_code == 200 and response.is_async
        text = b"".join([chunk async for chunk in response.streaming_content]).decode()
        if fmt == "json":
            messages = [record["message"] for record in json.loads(text)]
        else:
            messages = [row["message"] for row in csv.DictReader(io.StringIO(text))]
        assert messages == [name_error("Meta_New"), name_error("CamelCase")]


# --- what the dashboard found itself ------------------------------------------------------------


def test_what_the_dashboard_could_not_read_is_listed_apart_from_the_clouds_refusals(hq, people):
    building, device = hq[Scope.BUILDING], hq[Scope.DEVICE]
    MalformedPayload.objects.create(
        building_id=building,
        topic=f"devices/{device}/meta",
        kind="meta",
        reason="not JSON: Expecting value at line 1 column 1",
        raw="temperature=21.5",
        received_at=MORNING,
    )
    MalformedPayload.objects.create(
        building_id=building,
        topic=f"devices/{device}/meta",
        kind="meta",
        reason="too large: 300000 bytes > 262144",
        raw="x" * 5000,
        received_at=MORNING - timedelta(days=3),
    )
    client = logged_in(people.support)
    page = page_of(client, inspector_url(building))
    section = re.search(r'<section id="inspector-malformed".*?</section>', page, re.S).group(0)
    assert "Found by the dashboard" in section
    assert "Not refusals from the cloud" in section
    assert "temperature=21.5" in section and "Expecting value at line 1 column 1" in section
    assert "x" * 301 not in section and "x" * 300 + "…" in section  # a preview only
    recent = page_of(client, inspector_url(building), **{"from": "2026-03-01"})
    assert "temperature=21.5" in recent and "300000 bytes" not in recent


# --- check a payload ------------------------------------------------------------------------


def check(client: Client, building: uuid.UUID, kind: str, payload: str) -> str:
    response = client.post(inspector_url(building, "check/"), {"kind": kind, "payload": payload})
    assert response.status_code == 200
    return response.content.decode()


def test_the_check_form_offers_the_topic_kinds_clients_publish(hq, people):
    page = page_of(logged_in(people.support), inspector_url(hq[Scope.BUILDING], "check/"))
    assert '<label for="id_kind">Topic kind</label>' in page
    assert '<label for="id_payload">Payload</label>' in page and "<textarea" in page
    assert 'name="csrfmiddlewaretoken"' in page
    assert "Device meta (devices/&lt;id&gt;/meta)</option>" in page
    kinds = re.findall(r'<option value="(\w+)"', page)
    assert kinds == ["meta", "action", "fault_alarm", "head_count", "headcount_in", "headcount_out"]


def test_checking_the_seeds_data_reproduces_the_clouds_refusal_exactly(hq, people):
    page = check(
        logged_in(people.support),
        hq[Scope.BUILDING],
        Kind.META,
        json.dumps(seed.REJECTED["data"]),
    )
    [message] = re.findall(r'<p class="check-message">(.*?)</p>', page, re.S)
    assert html.unescape(message) == seed.REJECTED["error"]["message"]
    envelope = re.search(r'<li class="check-error">.*?<pre class="json">(.*?)</pre>', page, re.S)
    assert json.loads(html.unescape(re.sub(r"</?mark>", "", envelope.group(1)))) == seed.REJECTED
    assert marked(envelope.group(0)) == ['      "name": "Meta_New",\n']
    assert "The cloud would refuse this: 1 error." in page


def test_a_correct_payload_is_reported_valid(hq, people):
    page = check(
        logged_in(people.support), hq[Scope.BUILDING], Kind.META, json.dumps(seed.DEVICE_META)
    )
    assert "Valid: the cloud would accept this." in page and "check-error" not in page
    alarm = check(
        logged_in(people.support),
        hq[Scope.BUILDING],
        Kind.FAULT_ALARM,
        json.dumps(seed.DEVICE_FAULT_ALARM),
    )
    assert "Valid: the cloud would accept this." in alarm


def test_a_payload_that_is_not_json_gets_a_clear_answer(hq, people):
    page = check(logged_in(people.support), hq[Scope.BUILDING], Kind.META, "temperature=21.5")
    assert "Not valid JSON: Expecting value at line 1 column 1" in page
    assert "Valid: the cloud" not in page
    assert "temperature=21.5</textarea>" in page  # kept for correcting


def test_an_oversized_payload_or_an_unknown_kind_is_refused_with_a_reason(hq, people):
    client = logged_in(people.support)
    huge = json.dumps([{"name": "x", "value": "y" * (300 * 1024)}])
    page = check(client, hq[Scope.BUILDING], Kind.META, huge)
    assert "the broker takes at most 262,144 bytes (256 KB)" in page
    assert 'id="check-result"' not in page
    unknown = check(client, hq[Scope.BUILDING], Kind.REJECTED_META, "[]")
    assert "Select a valid choice" in unknown and 'id="check-result"' not in unknown


def test_the_check_form_needs_its_csrf_token(hq, people):
    client = Client(enforce_csrf_checks=True)
    client.force_login(people.support)
    response = client.post(
        inspector_url(hq[Scope.BUILDING], "check/"), {"kind": "meta", "payload": "[]"}
    )
    assert response.status_code == 403


def test_every_error_is_listed_with_its_own_element_marked(hq, people):
    payload = [
        {"name": "temperature", "value": "hot"},
        {"name": "Bad_Name", "value": 1},
        {"name": "als", "value": -5},
    ]
    page = check(logged_in(people.support), hq[Scope.BUILDING], Kind.META, json.dumps(payload))
    assert "The cloud would refuse this: 3 errors." in page
    errors = re.findall(r'<li class="check-error">.*?</li>', page, re.S)
    assert [marked(e) for e in errors] == [
        ['      "value": "hot"\n'],
        ['      "name": "Bad_Name",\n'],
        ['      "value": -5\n'],
    ]
    assert "Position: [2]/value. Value: -5." in errors[2]
    assert "<dt>" not in page  # the envelope's context is in the JSON, as the cloud sends it


# --- hostile strings ------------------------------------------------------------------------


def test_hostile_strings_in_every_field_are_shown_as_text(hq, people):
    building = hq[Scope.BUILDING]
    device = Device.objects.create(building_id=building, name=IMG)
    reject(
        building,
        device.id,
        f'Invalid payload due to {SCRIPT}.  Position: [0]/{IMG}. Value: "{SCRIPT}".',
        topic=f"devices/{device.id}/meta/rejected{SCRIPT}",
        context={"pattern": SCRIPT, IMG: IMG},
        data=[{IMG: SCRIPT, "name": IMG}],
    )
    MalformedPayload.objects.create(
        building_id=building,
        topic=IMG,
        kind=SCRIPT,
        reason=IMG,
        raw=SCRIPT,
        received_at=MORNING,
    )
    client = logged_in(people.support)
    pages = [
        page_of(client, inspector_url(building)),
        page_of(client, inspector_url(building), device=str(device.id)),
        page_of(client, inspector_url(building), q=SCRIPT),
        page_of(client, inspector_url(building), signature=SCRIPT),
        check(client, building, Kind.META, json.dumps([{"name": SCRIPT, IMG: IMG}])),
        check(client, building, Kind.META, SCRIPT + IMG),
    ]
    for page in pages:
        assert SCRIPT not in page and IMG not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page or "&lt;img src=x" in page
    first = pages[0]
    assert "&lt;img src=x onerror=alert(1)&gt;" in first and "&lt;script&gt;" in first
    # The hostile key is the failing element: marked, still as text.
    assert marked(entries(first)[0]) == [f'    "{IMG}": "{SCRIPT}",\n']


# --- the pieces, unit by unit -----------------------------------------------------------------


def test_mask_hides_values_and_positions():
    assert (
        rejections.mask(name_error("Meta_N7", position=4))
        == "Invalid payload due to regex pattern not matching.  Position: [i]/name. Value: …"
    )
    assert rejections.mask('level "x" above 300 at [2]') == 'level "…" above # at [i]'
    assert rejections.mask("  plain  ") == "plain"


def test_the_same_mistake_has_the_same_signature_whatever_the_value():
    meta = Kind.REJECTED_META
    one = rejections.signature(meta, name_error("Meta_N1"))
    assert one == rejections.signature(meta, name_error("Other", position=12))
    assert len(one) == 32 and re.fullmatch(r"[0-9a-f]+", one)
    assert one != rejections.signature(Kind.REJECTED_FAULT_ALARM, name_error("Meta_N1"))
    other = "Invalid payload due to type mismatch.  Position: [0]/value. Value: true."
    assert one != rejections.signature(meta, other)


@pytest.mark.parametrize(
    ("message", "path"),
    [
        (META_NEW_MESSAGE, [0, "name"]),
        ("Invalid payload due to type mismatch.  Position: value/level. Value: 3.", ["value", "level"]),
        ("Invalid payload due to value above maximum.  Position: /value/level.", ["value", "level"]),
        ("Invalid.  Position: /items/0/name. Value: 1.", ["items", 0, "name"]),
        ("Invalid.  Position: [12]/value/[3]. Value: 1.", [12, "value", 3]),
        ('Invalid payload due to missing required property.  Position: (root). Value: "error".', []),
        ("Invalid payload due to something else entirely.", None),
        ("", None),
    ],
)  # fmt: skip
def test_failing_path_reads_the_position_the_message_names(message, path):
    assert rejections.failing_path(message) == path


def text_of(segments: list[dict]) -> str:
    return "".join(segment["text"] for segment in segments)


def highlighted(segments: list[dict]) -> str:
    return "".join(segment["text"] for segment in segments if segment["highlight"])


def test_pretty_prints_like_json_dumps_with_sorted_keys_and_marks_one_element():
    data = seed.REJECTED
    expected = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True)
    assert text_of(rejections.pretty(data)) == expected
    assert not highlighted(rejections.pretty(data))

    scalar = rejections.pretty(data, ["data", 0, "name"])
    assert highlighted(scalar) == '      "name": "Meta_New",\n'
    assert text_of(scalar) == expected

    context = rejections.pretty(data, ["error", "context"])  # a container: key to bracket
    assert highlighted(context) == (
        '    "context": {\n'
        '      "maxLength": 100,\n'
        '      "minLength": 1,\n'
        '      "pattern": "^(~?)(?!.*__.*)[a-z][a-z0-9_]+$",\n'
        '      "title": "Name",\n'
        '      "type": "string"\n'
        "    },\n"
    )
    item = rejections.pretty([1, {"a": [True, None]}], [1])
    assert highlighted(item) == '  {\n    "a": [\n      true,\n      null\n    ]\n  }\n'
    assert rejections.pretty({"ä": "ü"}) == [{"text": '{\n  "ä": "ü"\n}', "highlight": False}]
    assert rejections.pretty([]) == [{"text": "[]", "highlight": False}]


def test_pretty_marks_the_deepest_part_of_a_path_that_exists():
    data = [{"name": "x"}]
    assert highlighted(rejections.pretty(data, [0, "missing"])) == '  {\n    "name": "x"\n  }\n'
    assert highlighted(rejections.pretty(data, ["0", "name"])) == '    "name": "x"\n'
    assert not highlighted(rejections.pretty(data, [5]))
    assert not highlighted(rejections.pretty("text", ["name"]))
    assert highlighted(rejections.pretty(data, [])) == text_of(rejections.pretty(data))


def test_pretty_is_bounded_however_big_the_data():
    lines = rejections.pretty(list(range(100_000)))
    text = text_of(lines)
    assert text.count("\n") == rejections.MAX_LINES
    assert text.endswith("\n" + rejections.TRUNCATED)

    long = rejections.pretty({"name": "y" * 1_000_000})
    assert len(text_of(long)) < rejections.MAX_CHARS + 100
    assert text_of(long).endswith(rejections.TRUNCATED)

    deep: Any = "bottom"
    for _ in range(200):
        deep = [deep]
    assert "[…]" in text_of(rejections.pretty(deep, [0] * 200))

    small = rejections.pretty(list(range(10)), [9], max_lines=5)
    assert text_of(small).endswith(rejections.TRUNCATED) and not highlighted(small)


def test_an_entry_says_who_sent_what_from_plain_values():
    device = uuid.uuid4()
    building = uuid.uuid4()
    common = {
        "kind": Kind.REJECTED_FAULT_ALARM,
        "message": "Invalid payload due to type mismatch.  Position: level. Value: 3.",
        "context": {"type": "string"},
        "data": {"level": 3, "type": "high_temperature"},
        "received_at": MORNING,
        "building_name": "Headquarters",
    }
    from_device = rejections.entry(
        topic=f"devices/{device}/fault_alarms/rejected",
        device_id=device,
        device_name="Lamp 1",
        **common,
    )
    assert from_device["source"] == {"scope": "device", "name": "Lamp 1", "id": str(device)}
    assert from_device["kind_label"] == "Fault alarm"
    assert (
        from_device["masked"] == "Invalid payload due to type mismatch.  Position: level. Value: …"
    )
    assert from_device["position"] == "level" and from_device["highlighted"]
    assert highlighted(from_device["data_segments"]) == '  "level": 3,\n'
    assert from_device["constraints"] == [{"name": "type", "value": "string"}]
    assert from_device["received_at"] == MORNING and from_device["device_id"] == str(device)

    from_building = rejections.entry(
        topic=f"buildings/{building}/fault_alarms/rejected",
        device_id=None,
        device_name=None,
        **common,
    )
    assert from_building["source"] == {
        "scope": "building",
        "name": "Headquarters",
        "id": str(building),
    }
    removed = rejections.entry(
        topic=f"devices/{device}/fault_alarms/rejected", device_id=None, device_name=None, **common
    )
    assert removed["source"] == {"scope": "device", "name": "", "id": str(device)}
