"""Cross-site scripting, in headless Chromium against ``serve`` and a real Mosquitto.

A building whose inventory was written by someone hostile: every building, space, area and
device name is a markup or attribute-breaking string. Its devices publish the same strings in
every field of every payload kind (meta values, names and units, fault alarms, actions,
refusals, malformed bytes), and people type them into alarm notes, action forms, filters and
the payload checker. Sam, a superuser, opens every view, first as the server renders it and
then as live pushes change it. Nothing may run: no dialog opens, no element the strings would
inject appears, no inline script is refused by the Content-Security-Policy, no request leaves
for an address the strings name, and each string is on the page as text.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from dashboard.contract.topics import Kind, Scope, build_topic
from tests import brokers
from tests.factories import PASSWORD
from tests.served import ServedDashboard, until_shown

pytestmark = pytest.mark.broker

# Each string marks what it would inject with "xssmarkN" (an id, a class, an attribute name
# or an address), so the page can be searched for it. At most 50 characters: a meta unit's
# limit, so that any of them fits in any field.
HOSTILE = [
    "<img src=/xssmark0 id=xssmark0 onerror=alert(0)>",
    '"><script id=xssmark1>alert(1)</script>',
    "javascript:alert(2)//xssmark2",
    "{{7*7}}{% debug %}${7*7}#{7*7}xssmark3",
    "</textarea><svg id=xssmark4 onload=alert(4)>",
    "' onmouseover='alert(5)' data-xssmark5='",
    '" autofocus onfocus="alert(6)" data-xssmark6="',
    '" hx-on:load="alert(7)" hx-get="/xssmark7" a="',
    "<b hx-get=/xssmark8 hx-trigger=load id=xssmark8>",
    "<a href=javascript:alert(9) class=xssmark9>x</a>",
    "<iframe srcdoc='<script>alert(10)</script>'>",
]
assert all(len(text) <= 50 for text in HOSTILE)
N = len(HOSTILE)


def hostile(n: int) -> str:
    return HOSTILE[n % N]


_NAMESPACE = uuid.UUID("5d0c2b9e-4a51-4f0e-9d3b-0c6c1f0a7e21")


def gid(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, name))


BUILDING = gid("building")
SPACES = [gid(f"space/{n}") for n in range(N)]
AREAS = [gid(f"area/{n}") for n in range(3)]
DEVICES = [gid(f"device/{n}") for n in range(N)]
BUILDING_NAME = f"HQ {HOSTILE[1]} {HOSTILE[7]}"


def space_name(n: int) -> str:
    return f"Space {n} {hostile(n)}"


def device_name(n: int) -> str:
    return f"Lamp {n} {hostile(n + 1)}"


INVENTORY = {
    "buildings": [
        {
            "id": BUILDING,
            "name": BUILDING_NAME,
            "spaces": [{"id": SPACES[n], "name": space_name(n), "capacity": 10} for n in range(N)],
            "areas": [
                {"id": AREAS[n], "name": f"Area {n} {hostile(n + 4)}", "space": SPACES[n]}
                for n in range(len(AREAS))
            ],
            "devices": [
                {"id": DEVICES[n], "name": device_name(n), "space": SPACES[n]} for n in range(N)
            ],
        }
    ]
}

# In the page's own script and markup: no event handler attribute, no inline script (JSON
# data blocks excepted), no htmx attribute or address naming a marker, no javascript: link.
FIND_INJECTED = """() => {
  const found = [];
  const show = (el, text) => found.push(`<${el.tagName.toLowerCase()} ${text}>`);
  for (const el of document.querySelectorAll("*")) {
    for (const attr of el.attributes) {
      const name = attr.name.toLowerCase();
      const value = attr.value;
      if (name.includes("xssmark")) show(el, name);
      else if (name.startsWith("on") || name.startsWith("hx-on")) show(el, `${name}="${value}"`);
      else if (name === "id" && value.includes("xssmark")) show(el, `id="${value}"`);
      else if ((name.startsWith("hx-") || name.startsWith("ws-")) && /xssmark|alert/.test(value))
        show(el, `${name}="${value}"`);
      else if (["href", "src", "action", "formaction", "xlink:href"].includes(name)
               && value.trim().toLowerCase().startsWith("javascript:"))
        show(el, `${name}="${value}"`);
      else if (["src", "srcdoc"].includes(name) && /xssmark|alert/.test(value))
        show(el, `${name}="${value}"`);
    }
    for (const token of el.classList) if (token.startsWith("xssmark")) show(el, `class="${token}"`);
  }
  for (const script of document.querySelectorAll("script:not([src])")) {
    if (script.type !== "application/json") show(script, "inline script");
  }
  for (const frame of document.querySelectorAll("iframe, object, embed")) show(frame, "frame");
  return found;
}"""


@dataclass
class Watch:
    """One browser context as Sam uses it, and everything suspicious it saw."""

    context: BrowserContext
    base: str
    dialogs: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # Content-Security-Policy reports
    requests: list[str] = field(default_factory=list)  # to addresses a string names

    def open(self, path: str) -> Page:
        page = self.context.new_page()
        page.goto(f"{self.base}{path}")
        return page

    def assert_inert(self, page: Page, where: str, *texts: str) -> None:
        """Nothing ran or was injected on ``page``, and each of ``texts`` shows as text."""
        body = page.locator("body")
        for text in texts:
            expect(body).to_contain_text(text)
        page.wait_for_timeout(100)  # an onload or onerror, an hx-trigger=load, a report
        assert page.evaluate(FIND_INJECTED) == [], where
        assert self.dialogs == [], where
        assert self.refused == [], where
        assert self.requests == [], where


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, mosquitto: brokers.MosquittoBroker
) -> Iterator[ServedDashboard]:
    """The hostile inventory imported as operators do, and Sam, a superuser."""
    directory = Path(tmp_path_factory.mktemp("xss"))
    dashboard = ServedDashboard(directory, mosquitto.url)
    inventory = directory / "inventory.json"
    inventory.write_text(json.dumps(INVENTORY))
    dashboard.manage(  # one process: migrate, collectstatic, the import, Sam
        "shell",
        "-c",
        "from django.core.management import call_command; "
        "from django.contrib.auth.models import User; "
        "call_command('migrate', verbosity=0); "
        "call_command('collectstatic', interactive=False, verbosity=0); "
        f"call_command('import_inventory', {str(inventory)!r}); "
        f"User.objects.create_superuser('sam', password={PASSWORD!r})",
    )
    dashboard.start()
    yield dashboard
    assert dashboard.stop() == 0
    assert "Internal Server Error" not in "".join(dashboard.output)


@pytest.fixture(scope="module")
def watch(chromium: Any, served: ServedDashboard) -> Iterator[Watch]:
    """Sam's browser, logged in through a login link whose ``next`` is a javascript: URL."""
    context = chromium.new_context()
    watch = Watch(context, served.url)

    def on_dialog(dialog: Any) -> None:
        watch.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def on_console(message: Any) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            watch.refused.append(message.text)

    context.on("dialog", on_dialog)
    context.on("console", on_console)
    context.on(
        "request",
        lambda request: (
            "xssmark" in request.url.split("?")[0] and watch.requests.append(request.url)
        ),
    )
    # Reported for every blocked inline script or load, even one that logs nothing itself.
    context.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => console.error("
        "'Refused to run: ' + e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sample));"
    )
    page = watch.open("/accounts/login/?next=javascript:alert(document.domain)")
    page.get_by_label("Username").fill("sam")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Buildings")).to_be_visible()
    assert page.url == f"{served.url}/"
    watch.assert_inert(page, "after logging in", BUILDING_NAME)
    page.close()
    yield watch
    context.close()


@pytest.fixture(scope="module")
def mqtt(mosquitto: brokers.MosquittoBroker) -> Iterator[Callable[[str, Any], None]]:
    with brokers.json_publisher(mosquitto) as send:
        yield send


STAMP = "2026-03-02T09:00:00Z"


def meta(n: int, value: str) -> list[dict[str, Any]]:
    """Device meta under names the cloud does not define: shown raw, with their own labels."""
    return [
        {
            "name": "label",
            "value": value,
            "display_name": hostile(n + 2),
            "unit_of_measure": hostile(n + 3),
            "timestamp": STAMP,
        },
        {"name": "settings", "value": {hostile(n): hostile(n + 1)}, "display_name": "Settings"},
    ]


def fault_alarm(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "timestamp": STAMP,
        "priority": 250,  # above ALARM_NOTIFY_PRIORITY: a banner too
        "level": "critical",
        "type": f"fault_{n}",
        "description": hostile(n),
        "notes": hostile(n + 5),
        "value": {hostile(n + 1): hostile(n + 2)},
        **fields,
    }


def refusal(n: int, message: str) -> dict[str, Any]:
    return {
        "error": {
            "message": f"Invalid payload due to {message}.  Position: [0]/name. "
            f'Value: "{hostile(n + 1)}".',
            "context": {"pattern": hostile(n + 2), hostile(n + 3): hostile(n + 4)},
        },
        "data": [{"name": hostile(n + 5), hostile(n + 6): hostile(n + 7)}],
    }


def entity(scope: Scope, entity_id: str, kind: Kind) -> str:
    return build_topic(scope, entity_id, kind)


@pytest.fixture(scope="module")
def traffic(watch: Watch, mqtt: Callable[[str, Any], None]) -> Iterator[Page]:
    """The hostile devices publish every payload kind while Sam watches the building page.

    Yields that page as the live pushes left it.
    """
    page = watch.open(f"/buildings/{BUILDING}/")
    expect(page.locator("#page-status")).to_contain_text("connected")
    expect(page.locator("#bridge-status")).to_contain_text("connected")
    page.evaluate("window.notReloaded = true")

    first = page.locator(f"#device-meta-{uuid.UUID(DEVICES[0]).hex}")
    until_shown(
        lambda: mqtt(entity(Scope.DEVICE, DEVICES[0], Kind.META), meta(0, hostile(0))),
        lambda: expect(first).to_contain_text(hostile(0), timeout=1000),
    )
    for n, device in enumerate(DEVICES):
        mqtt(entity(Scope.DEVICE, device, Kind.META), meta(n, hostile(n)))
        mqtt(entity(Scope.DEVICE, device, Kind.FAULT_ALARM), fault_alarm(n, device=device))
        mqtt(entity(Scope.DEVICE, device, Kind.REJECTED_META), refusal(n, hostile(n)))
        # Not JSON at all, and JSON of the wrong shape: the dashboard's own refusals.
        mqtt(entity(Scope.DEVICE, device, Kind.META), hostile(n).encode())
        mqtt(
            entity(Scope.DEVICE, device, Kind.META),
            [{"name": hostile(n), "value": hostile(n + 1), "unit_of_measure": "x" * 60}],
        )
    for n, space in enumerate(SPACES):
        mqtt(entity(Scope.SPACE, space, Kind.HEAD_COUNT), {"name": "headcount", "value": n})
        mqtt(
            entity(Scope.SPACE, space, Kind.HEADCOUNT_IN), {"name": hostile(n), "value": hostile(n)}
        )
        action = {
            "name": hostile(n),
            "type": "on",
            "target_type": "space",
            "target_id": space,
            "value": {"transition_time": 5, hostile(n + 1): hostile(n + 2)},
            "created": STAMP,
        }
        mqtt(entity(Scope.SPACE, space, Kind.ACTION), action)
    for n, area in enumerate(AREAS):
        mqtt(entity(Scope.AREA, area, Kind.HEAD_COUNT), {"name": "headcount", "value": 3 + n})
    mqtt(entity(Scope.BUILDING, BUILDING, Kind.HEAD_COUNT), {"name": "headcount", "value": 42})
    mqtt(
        entity(Scope.BUILDING, BUILDING, Kind.FAULT_ALARM),
        fault_alarm(N, type="building_fault", description=f"Building {hostile(4)}"),
    )
    mqtt(
        entity(Scope.BUILDING, BUILDING, Kind.REJECTED_FAULT_ALARM),
        refusal(3, f"building {hostile(9)}"),
    )
    mqtt(
        entity(Scope.BUILDING, BUILDING, Kind.ACTION),
        {
            "name": f"Device action {hostile(8)}",
            "type": "dim",
            "target_type": "device",
            "target_id": DEVICES[1],
            "value": {"level": 40, "transition_time": 5, "note": hostile(9)},
            "created": STAMP,
        },
    )

    last = N - 1
    expect(page.locator(f"#device-meta-{uuid.UUID(DEVICES[last]).hex}")).to_contain_text(
        hostile(last + 3)
    )
    expect(page.locator("#alarms .alarm")).to_have_count(N + 1)
    expect(page.locator("#alarm-banner")).to_contain_text(f"Building {hostile(4)}")
    expect(page.locator("#actions")).to_contain_text(f"Device action {hostile(8)}")
    expect(page.locator("#rejections")).to_contain_text(f"building {hostile(9)}")
    expect(page.locator(f"#headcount-{uuid.UUID(BUILDING).hex} .head-count")).to_have_text("42")
    expect(page.locator(f"#headcount-{uuid.UUID(AREAS[2]).hex} .head-count")).to_have_text("5")
    expect(page.locator("#malformed")).to_contain_text(hostile(N - 1))  # the last raw bytes
    yield page
    page.close()


# --- the building page --------------------------------------------------------------------


def test_names_from_the_inventory_stay_text_on_the_building_pages_first_render(watch):
    page = watch.open(f"/buildings/{BUILDING}/?{urlencode({'q': HOSTILE[6], 'space': HOSTILE[5]})}")
    expect(page.locator("#page-status")).to_contain_text("connected")
    names = [space_name(n) for n in range(N)] + [device_name(n) for n in range(N)]
    watch.assert_inert(page, "building page", BUILDING_NAME, *names)
    expect(page.get_by_label("Search devices")).to_have_value(HOSTILE[6])
    # The instant filter takes the reflected text as text as well.
    page.get_by_label("Search devices").fill(hostile(3))
    expect(page.locator("#device-count")).to_have_text(f"1 of {N} shown")
    expect(page.locator("#trend-chart .uplot")).to_be_visible()  # series named after spaces
    watch.assert_inert(page, "building page, filtered")
    page.close()


def test_every_payload_kind_pushed_live_to_the_building_page_stays_text(watch, traffic):
    assert traffic.evaluate("window.notReloaded") is True
    pushed = [hostile(n) for n in range(N)] + [f"Building {hostile(4)}"]
    watch.assert_inert(traffic, "building page, live", *pushed)
    for tile in ("#alarms", "#actions", "#rejections", "#malformed", "#alarm-banner"):
        expect(traffic.locator(tile)).to_contain_text("xssmark")

    traffic.reload()  # now all of it is in the page as the server renders it
    expect(traffic.locator("#page-status")).to_contain_text("connected")
    watch.assert_inert(traffic, "building page, reloaded", *pushed)


def test_a_device_page_stays_text_first_and_live(watch, traffic, mqtt):
    device = DEVICES[2]
    page = watch.open(f"/buildings/{BUILDING}/devices/{device}/")
    deadline = time.monotonic() + 15
    while not page.locator("table.history").count():  # history is written in batches
        assert time.monotonic() < deadline, "the device's history never showed"
        page.wait_for_timeout(300)
        page.reload()
    expect(page.locator("#page-status")).to_contain_text("connected")
    watch.assert_inert(page, "device page", device_name(2), space_name(2), hostile(2), hostile(4))

    label = page.locator(f"#meta-{uuid.UUID(device).hex}-label .meta-value")
    mqtt(entity(Scope.DEVICE, device, Kind.META), meta(7, f"live {hostile(8)}"))
    expect(label).to_have_text(f"live {hostile(8)}")
    watch.assert_inert(page, "device page, live", hostile(9), hostile(10))
    page.close()


def test_an_operators_action_on_a_hostile_name_and_a_forged_choice_stay_text(watch, traffic):
    page = watch.open(f"/buildings/{BUILDING}/")
    expect(page.locator("#bridge-status")).to_contain_text("connected")
    controls = page.get_by_role("form", name=f"Action for {space_name(4)}")
    controls.get_by_label("Action").select_option("dim")
    controls.get_by_label("Level").fill("40")
    controls.get_by_role("button", name=f"Dim {space_name(4)} to 40 %").click()
    attempt = page.locator(".attempt").first
    expect(attempt).to_contain_text(f"Dim {space_name(4)} to 40 %: sent")
    watch.assert_inert(page, "action sent", f"Dim {space_name(4)} to 40 %")

    # A forged choice comes back as a field error naming what was sent: as text.
    controls = page.get_by_role("form", name=f"Action for {space_name(6)}")
    controls.get_by_label("Action").evaluate(
        "(select, value) => { select.options[1].value = value; select.selectedIndex = 1; }",
        HOSTILE[6],
    )
    controls.get_by_role("button").click()
    errors = page.locator(".action-form .errors")
    expect(errors).to_contain_text(f"Select a valid choice. {HOSTILE[6]} is not one")
    watch.assert_inert(page, "action refused")

    log = watch.open(f"/buildings/{BUILDING}/activity/?{urlencode({'user': HOSTILE[0]})}")
    watch.assert_inert(log, "activity, filtered", HOSTILE[0])
    log.goto(f"{watch.base}/buildings/{BUILDING}/activity/")
    watch.assert_inert(log, "activity", f"Dim {space_name(4)} to 40 %", space_name(6), HOSTILE[6])
    log.close()
    page.close()


# --- alarms, the inspector, the overview ---------------------------------------------------------


NOTES = [f"ack {HOSTILE[0]}", f"clear {HOSTILE[4]}", f"bulk {HOSTILE[7]}"]


@pytest.fixture(scope="module")
def handled(watch: Watch, traffic: Page) -> None:
    """Sam acknowledges and clears the building's own alarm, then two more at once, each
    with a hostile note, on the alarms page."""
    page = watch.open(f"/buildings/{BUILDING}/alarms/")
    building = page.locator("tr.alarm-row").filter(
        has=page.locator("td.source", has_text="Building")
    )

    def act(step: str, note: str, done: str) -> None:
        form = building.locator(f"form[action$='/{step}/']")
        form.locator("input[name=note]").fill(note)
        form.locator("button").click()
        expect(page.locator(".messages")).to_contain_text(done)

    act("acknowledge", NOTES[0], "Acknowledged 1 alarm.")
    act("clear", NOTES[1], "Cleared 1 alarm.")
    page.locator("tr.alarm-row input[type=checkbox]").nth(0).check()
    page.locator("tr.alarm-row input[type=checkbox]").nth(1).check()
    page.locator("#bulk-note").fill(NOTES[2])
    page.get_by_role("button", name="Acknowledge selected").click()
    expect(page.locator(".messages")).to_contain_text("Acknowledged 2 alarms.")
    page.close()


def test_alarms_and_the_notes_people_write_on_them_stay_text(watch, handled):
    page = watch.open(
        f"/buildings/{BUILDING}/alarms/?{urlencode({'level': HOSTILE[1], 'device': HOSTILE[2]})}"
    )
    watch.assert_inert(page, "alarms, bad filters", device_name(0), hostile(5), NOTES[2])
    page.goto(f"{watch.base}/buildings/{BUILDING}/alarms/?state=any")
    watch.assert_inert(page, "alarms", *NOTES, f"Building {hostile(4)}")
    page.close()


def test_the_inspector_stays_text_first_live_and_in_the_payload_checker(watch, traffic, mqtt):
    page = watch.open(
        f"/buildings/{BUILDING}/rejected/?{urlencode({'q': HOSTILE[4], 'from': HOSTILE[2]})}"
    )
    expect(page.get_by_label("Message contains")).to_have_value(HOSTILE[4])
    watch.assert_inert(page, "inspector, filtered", HOSTILE[4])

    page.goto(f"{watch.base}/buildings/{BUILDING}/rejected/")
    expect(page.locator("#page-status")).to_contain_text("connected")
    watch.assert_inert(page, "inspector", *HOSTILE, device_name(N - 1))
    newest = page.locator("#rejected-live .rejection-entry").first
    mqtt(entity(Scope.DEVICE, DEVICES[5], Kind.REJECTED_META), refusal(5, f"live {hostile(6)}"))
    expect(newest).to_contain_text(f"live {hostile(6)}")
    watch.assert_inert(page, "inspector, live", device_name(5))

    page.get_by_role("link", name="Check a payload").click()
    payload = page.get_by_label("Payload", exact=True)
    text = f'[{{"name": "{HOSTILE[4]}", "value": 1}}] {HOSTILE[4]}'
    payload.fill(text)
    page.get_by_role("button", name="Check").click()
    expect(page.locator("#check-result")).to_contain_text("Not valid JSON")
    expect(page.get_by_label("Payload", exact=True)).to_have_value(text)
    watch.assert_inert(page, "payload checker")
    payload = page.get_by_label("Payload", exact=True)
    payload.fill(json.dumps([{"name": HOSTILE[4], "value": HOSTILE[0]}]))
    page.get_by_role("button", name="Check").click()
    expect(page.locator("#check-result mark").first).to_contain_text(HOSTILE[4])
    watch.assert_inert(page, "payload checker, errors")
    page.close()


def test_the_overview_stays_text_first_and_live(watch, traffic, mqtt):
    page = watch.open("/")
    expect(page.locator("#page-status")).to_contain_text("connected")
    watch.assert_inert(page, "overview", BUILDING_NAME)
    row = page.locator(f"#summary-{uuid.UUID(BUILDING).hex}")
    mqtt(entity(Scope.BUILDING, BUILDING, Kind.HEAD_COUNT), {"name": "headcount", "value": 17})
    expect(row.locator(".head-count")).to_have_text("17")
    watch.assert_inert(page, "overview, live", BUILDING_NAME)
    page.close()


# --- the admin ------------------------------------------------------------------------------------

# Each admin page, and the hostile text it shows (in cells and filters, not in form fields).
ADMIN_PAGES = [
    ("/admin/", []),
    ("/admin/auth/user/", []),
    (f"/admin/dashboard/building/?{urlencode({'q': HOSTILE[1]})}", [BUILDING_NAME]),
    (f"/admin/dashboard/building/{BUILDING}/change/", []),
    ("/admin/dashboard/space/", [space_name(5), BUILDING_NAME]),
    (f"/admin/dashboard/space/{SPACES[6]}/change/", []),
    ("/admin/dashboard/area/", [space_name(0)]),
    ("/admin/dashboard/device/", [device_name(4), space_name(8)]),
    ("/admin/dashboard/role/", []),
    ("/admin/dashboard/faultalarm/", [device_name(3)]),
    ("/admin/dashboard/rejectedpayload/", [device_name(6)]),
    ("/admin/dashboard/malformedpayload/", []),
    ("/admin/dashboard/actionseen/", [hostile(7)]),
    ("/admin/dashboard/actionattempt/", []),
]


def test_the_admin_shows_every_hostile_row_as_text(watch, handled):
    page = watch.open("/admin/")
    for path, texts in ADMIN_PAGES:
        page.goto(f"{watch.base}{path}")
        expect(page.locator("#site-name")).to_be_visible()
        watch.assert_inert(page, path, *texts)
    # Alarms with their description and notes in text areas, and the history people wrote.
    for search, texts in (
        ("fault_4", [hostile(4), hostile(9)]),
        ("building_fault", NOTES[:2]),
    ):
        page.goto(f"{watch.base}/admin/dashboard/faultalarm/?q={search}")
        page.locator("#result_list tbody a").first.click()
        expect(page.locator("#site-name")).to_be_visible()
        watch.assert_inert(page, f"alarm {search} in the admin", *texts)
    page.close()


# --- the checks themselves -------------------------------------------------------------------------


def test_the_search_finds_what_each_string_injects_when_pasted_unescaped(chromium):
    """The checks above can fail: each string pasted into markup unescaped (as text, in a
    double- or single-quoted attribute, or as a link) is found, and nothing is run here."""
    page = chromium.new_page()
    no_scripts = "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'\">"
    for text in HOSTILE:
        found = []
        for markup in (text, f'<p title="{text}">', f"<p title='{text}'>", f'<a href="{text}">'):
            page.set_content(no_scripts + markup)
            found += page.evaluate(FIND_INJECTED)
        if text == HOSTILE[3]:
            assert found == []  # template syntax is only ever text: the pages show it literally
        else:
            assert found, text
    page.close()
