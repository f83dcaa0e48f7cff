"""Who may reach what: every URL, WebSocket route and form of the project, for everyone.

The story: Headquarters is renamed Saffron House here, so its data is easy to spot. Olivia
operates it, Victor watches it, Sam supports its integrators. Oscar works at the other
building, Cobalt Tower, and has no role at Saffron House. Stan is staff (the admin lets him
in) without a building; root is a superuser. Each building's data carries its word ("saffron",
"cobalt"): a device, a meta value and its history, alarms and an alarm note, a rejection, a
malformed message, an audit entry and an action seen. A response or a socket frame that shows
a building to someone without a role on it, or on another building's page, is caught by that
word; rejections and malformed messages carry a second word only support may see.

The matrix is a table: one row per URL and method, one column per person. URLs come from the
project's URLconf and sockets from its WebSocket routes, so a URL or route added without a row
fails ``test_every_url_and_socket_route_has_a_row_in_the_matrix``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from dashboard import consumers
from dashboard.consumers import NO_ACCESS, NOT_LOGGED_IN
from dashboard.contract import rejections
from dashboard.contract.topics import Kind, Scope, build_topic
from dashboard.live import layer, tiles
from dashboard.models import (
    ActionAttempt,
    ActionSeen,
    AlarmEvent,
    Building,
    Device,
    FaultAlarm,
    LatestMeta,
    MalformedPayload,
    MetaSample,
    RejectedPayload,
    Space,
)
from dashboard.routing import websocket_urlpatterns
from gooee_site.asgi import application
from tests import seed
from tests.bridging import send, subscribed
from tests.factories import PASSWORD, People, make_building, make_people

# --- the people and what the rules give them ---------------------------------------------------

ANONYMOUS = "anonymous"
OUTSIDER = "outsider"  # Oscar: a viewer of Cobalt Tower only
VIEWER = "viewer"  # Victor
OPERATOR = "operator"  # Olivia
SUPPORT = "support"  # Sam
STAFF = "staff"  # Stan: is_staff, no building role
SUPERUSER = "superuser"  # root
ROLES = (ANONYMOUS, OUTSIDER, VIEWER, OPERATOR, SUPPORT, STAFF, SUPERUSER)

HQ = "hq"  # Saffron House
ELSEWHERE = "elsewhere"  # Cobalt Tower
# The buildings each person has a role on, and those where that role includes support.
HAS_A_ROLE_ON = {
    ANONYMOUS: (),
    OUTSIDER: (ELSEWHERE,),
    VIEWER: (HQ,),
    OPERATOR: (HQ,),
    SUPPORT: (HQ,),
    STAFF: (),
    SUPERUSER: (HQ, ELSEWHERE),
}
SUPPORTS = {SUPPORT: (HQ,), SUPERUSER: (HQ, ELSEWHERE)}

# --- the HTTP matrix ------------------------------------------------------------------------------

GET, POST = "GET", "POST"
LOGIN = "login page"  # a redirect to the login page, back here after
ADMIN = "admin login"  # a redirect to the admin's login page
# Whose data a response may show: Saffron House's (the URL's building), the buildings the
# person has a role on (the overview), none (account pages), anything (the admin, superusers).
BUILDING, OVERVIEW, NOBODY, EVERYTHING = "building", "overview", "nobody", "everything"


@dataclass(frozen=True)
class Row:
    name: str  # the URL's name, as reverse() takes it
    method: str
    outcomes: tuple[int | str, ...]  # one per person, in ROLES order
    scope: str
    kwargs: tuple[tuple[str, str], ...] = ()  # URL arguments the world does not give

    def outcome(self, role: str) -> int | str:
        return self.outcomes[ROLES.index(role)]

    @property
    def label(self) -> str:
        return f"{self.method} {self.name}" + "".join(f" {v}" for _, v in self.kwargs)


def row(name: str, method: str, *outcomes: int | str, scope: str = BUILDING, **kwargs: str) -> Row:
    assert len(outcomes) == len(ROLES), name
    return Row(name, method, outcomes, scope, tuple(kwargs.items()))


# Every person is a column: anonymous, outsider, viewer, operator, support, staff, superuser.
# fmt: off
MATRIX = [
    # The dashboard: every role on the building sees it, operators act, support inspects.
    row("home",                   GET,  LOGIN, 200, 200, 200, 200, 200, 200, scope=OVERVIEW),
    row("building",               GET,  LOGIN, 403, 200, 200, 200, 403, 200),
    row("device",                 GET,  LOGIN, 403, 200, 200, 200, 403, 200),
    row("send_action",            GET,  LOGIN, 405, 405, 405, 405, 405, 405),
    row("send_action",            POST, LOGIN, 403, 403, 200, 403, 403, 200),
    row("reset_count",            GET,  LOGIN, 405, 405, 405, 405, 405, 405),
    row("reset_count",            POST, LOGIN, 403, 403, 200, 403, 403, 200),
    row("space_picker",           GET,  LOGIN, 403, 403, 200, 403, 403, 200),
    row("activity",               GET,  LOGIN, 403, 200, 200, 200, 403, 200),
    row("activity_csv",           GET,  LOGIN, 403, 200, 200, 200, 403, 200),
    row("occupancy",              GET,  LOGIN, 403, 200, 200, 200, 403, 200),
    row("occupancy_csv",          GET,  LOGIN, 403, 200, 200, 200, 403, 200),
    row("alarms",                 GET,  LOGIN, 403, 200, 200, 200, 403, 200),
    row("alarm_acknowledge",      GET,  LOGIN, 405, 405, 405, 405, 405, 405),
    row("alarm_acknowledge",      POST, LOGIN, 403, 403, 303, 303, 403, 303),
    row("alarm_clear",            GET,  LOGIN, 405, 405, 405, 405, 405, 405),
    row("alarm_clear",            POST, LOGIN, 403, 403, 303, 303, 403, 303),
    row("alarm_acknowledge_many", GET,  LOGIN, 405, 405, 405, 405, 405, 405),
    row("alarm_acknowledge_many", POST, LOGIN, 403, 403, 303, 303, 403, 303),
    row("inspector",              GET,  LOGIN, 403, 403, 403, 200, 403, 200),
    row("inspector_export",       GET,  LOGIN, 403, 403, 403, 200, 403, 200, fmt="json"),
    row("inspector_export",       GET,  LOGIN, 403, 403, 403, 200, 403, 200, fmt="csv"),
    row("inspector_check",        GET,  LOGIN, 403, 403, 403, 200, 403, 200),
    row("inspector_check",        POST, LOGIN, 403, 403, 403, 200, 403, 200),
    # Accounts (Django's views): no building's data on any of them; no password reset (no
    # e-mail is sent), accounts are managed in the admin.
    row("login",                  GET,  200,   200, 200, 200, 200, 200, 200, scope=NOBODY),
    row("login",                  POST, 200,   200, 200, 200, 200, 200, 200, scope=NOBODY),
    row("logout",                 GET,  405,   405, 405, 405, 405, 405, 405, scope=NOBODY),
    row("logout",                 POST, 302,   302, 302, 302, 302, 302, 302, scope=NOBODY),
    # For the operations team: no login, and nothing of any building. /readyz is 503 here, as
    # no bridge runs in the test process and no Redis could bring word of one elsewhere;
    # /metrics is not found while METRICS_TOKEN is unset, whoever is logged in.
    row("healthz",                GET,  200,   200, 200, 200, 200, 200, 200, scope=NOBODY),
    row("readyz",                 GET,  503,   503, 503, 503, 503, 503, 503, scope=NOBODY),
    row("metrics",                GET,  404,   404, 404, 404, 404, 404, 404, scope=NOBODY),
    # The admin, as Django's permissions give it: staff get in, only superusers see data.
    row("admin:index",            GET,  ADMIN, ADMIN, ADMIN, ADMIN, ADMIN, 200, 200, scope=EVERYTHING),
    *(
        row(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist",
            GET,  ADMIN, ADMIN, ADMIN, ADMIN, ADMIN, 403, 200, scope=EVERYTHING)
        for model in admin.site._registry
    ),
]
# fmt: on

# What each POST sends: the form as the page would, for one building's objects.
POSTS: dict[str, Callable[[Any], dict[str, Any]]] = {
    # A device target: a refusal must not even say the device's name to a stranger.
    "send_action": lambda place: {
        f"device-{place.device}-target": f"device:{place.device}",
        f"device-{place.device}-action": "off",
        f"device-{place.device}-transition_time": 5,
        f"device-{place.device}-idempotency_key": uuid.uuid4().hex,
    },
    "reset_count": lambda place: {
        "target": f"space:{place.space}",
        "idempotency_key": uuid.uuid4().hex,
        "confirm": "on",
    },
    "alarm_acknowledge": lambda place: {"note": "On my way"},
    "alarm_clear": lambda place: {"note": "Replaced the sensor"},
    "alarm_acknowledge_many": lambda place: {"alarm": [place.alarm], "note": ""},
    "inspector_check": lambda place: {"kind": Kind.META.value, "payload": "[]"},
    "login": lambda place: {"username": "victor", "password": "not the password"},
}


def form(name: str, place: Place) -> dict[str, Any]:
    return POSTS[name](place) if name in POSTS else {}


# What an accepted POST changes; a refused one must leave it as it was.
def _alarm_state(world: World) -> str:
    return FaultAlarm.objects.get(pk=world.hq.alarm).state


EFFECTS: dict[str, Callable[[Any], bool]] = {
    "send_action": lambda world: ActionAttempt.objects.filter(
        outcome=ActionAttempt.ACKNOWLEDGED
    ).exists(),
    "reset_count": lambda world: ActionAttempt.objects.filter(
        outcome=ActionAttempt.ACKNOWLEDGED, topic__endswith="/meta/head_count"
    ).exists(),
    "alarm_acknowledge": lambda world: _alarm_state(world) == FaultAlarm.ACKNOWLEDGED,
    "alarm_clear": lambda world: _alarm_state(world) == FaultAlarm.CLEARED,
    "alarm_acknowledge_many": lambda world: _alarm_state(world) == FaultAlarm.ACKNOWLEDGED,
}
REFUSALS = (LOGIN, ADMIN, 403, 404, 405)

# --- the WebSocket matrix -------------------------------------------------------------------------

REFUSED = "refused"  # accepted, then closed: 4001 when not logged in, 4003 without access
ALL, SUPPORT_TILES, SUMMARY = tiles.EVERYONE, tiles.SUPPORT, tiles.SUMMARY


@dataclass(frozen=True)
class SocketRow:
    route: str  # the route as dashboard/routing.py writes it
    # One per person, in ROLES order: REFUSED, or what the page follows, as the snapshot
    # requests show it: {building: [audiences]}.
    outcomes: tuple[str | dict[str, list[str]], ...]

    def outcome(self, role: str) -> str | dict[str, list[str]]:
        return self.outcomes[ROLES.index(role)]


# fmt: off
SOCKETS = [
    SocketRow("ws/buildings/<uuid:building_id>/", (
        REFUSED,                                        # anonymous
        REFUSED,                                        # outsider
        {HQ: [ALL]},                                    # viewer
        {HQ: [ALL]},                                    # operator
        {HQ: [ALL, SUPPORT_TILES]},                     # support
        REFUSED,                                        # staff
        {HQ: [ALL, SUPPORT_TILES]},                     # superuser
    )),
    SocketRow("ws/overview/", (
        REFUSED,                                        # anonymous
        {ELSEWHERE: [SUMMARY]},                         # outsider
        {HQ: [SUMMARY]},                                # viewer
        {HQ: [SUMMARY]},                                # operator
        {HQ: [SUMMARY]},                                # support
        {},                                             # staff: an empty overview, open
        {HQ: [SUMMARY], ELSEWHERE: [SUMMARY]},          # superuser
    )),
]
# fmt: on
OUR_ORIGIN = b"http://testserver"
TIMESTAMP = "2024-05-01T08:00:00Z"
FOREIGN_ORIGINS = [b"http://evil.example", b"null", None]  # None: no Origin header at all

# --- the project's URLs and routes, read from the URLconf -----------------------------------------


def _walk(
    patterns: list[Any], namespace: str = "", params: frozenset[str] = frozenset()
) -> Iterator[tuple[str, frozenset[str]]]:
    for pattern in patterns:
        names = getattr(pattern.pattern, "converters", None) or pattern.pattern.regex.groupindex
        here = params | frozenset(names)
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _walk(pattern.url_patterns, inner, here)
        else:
            assert isinstance(pattern, URLPattern)
            yield f"{namespace}{pattern.name or pattern.pattern}", here


ROUTES: dict[str, frozenset[str]] = dict(_walk(get_resolver().url_patterns))
# The admin is Django's: its index and each registered model's list are rows; the rest of it
# (add, change, history...) follows the same permissions and is Django's to test.
ADMIN_NAMESPACE = "admin:"

# --- the world ------------------------------------------------------------------------------------


@dataclass
class Place:
    building: uuid.UUID
    space: uuid.UUID
    device: uuid.UUID  # the device whose name, values and mistakes carry the word
    alarm: int  # an open alarm of that device
    word: str  # in every piece of the building's data

    @property
    def support_words(self) -> tuple[str, ...]:
        """In what only the building's support may see: rejected and malformed payloads."""
        return (f"{self.word}-rejected", f"{self.word}-malformed")


def furnish(building_id: uuid.UUID, space_id: uuid.UUID, word: str, name: str) -> Place:
    """Give a building its name and data, every piece of it carrying ``word``."""
    Building.objects.filter(pk=building_id).update(name=name)
    title = word.title()
    device = Device.objects.create(
        building_id=building_id, space_id=space_id, name=f"{title} sensor"
    )
    now = timezone.now()
    LatestMeta.objects.create(
        device=device, name="firmware", value=f"{word}-firmware", received_at=now
    )
    MetaSample.objects.create(
        device=device, name="firmware", value=f"{word}-firmware", received_at=now
    )
    alarm = FaultAlarm.objects.create(
        building_id=building_id,
        device=device,
        type="overheat",
        level="warning",
        priority=200,
        description=f"The {word} sensor overheats",
        payload=seed.DEVICE_FAULT_ALARM,
        first_seen=now,
        last_seen=now,
    )
    handled = FaultAlarm.objects.create(
        building_id=building_id,
        type="door_open",
        level="info",
        priority=10,
        payload=seed.BUILDING_FAULT_ALARM,
        state=FaultAlarm.ACKNOWLEDGED,
        acknowledged_at=now,
        first_seen=now,
        last_seen=now,
    )
    AlarmEvent.objects.create(
        alarm=handled, kind=AlarmEvent.ACKNOWLEDGED, username="janitor", note=f"{title} door"
    )
    message = (
        "Invalid payload due to regex pattern not matching.  "
        f'Position: [0]/name. Value: "{word}-rejected".'
    )
    RejectedPayload.objects.create(
        building_id=building_id,
        device=device,
        topic=build_topic(Scope.DEVICE, device.id, Kind.REJECTED_META),
        kind=Kind.REJECTED_META.value,
        message=message,
        signature=rejections.signature(Kind.REJECTED_META.value, message),
        context=seed.REJECTED["error"]["context"],
        data=[{"name": f"{word}-rejected", "value": 10}],
        received_at=now,
    )
    MalformedPayload.objects.create(
        building_id=building_id,
        topic=build_topic(Scope.DEVICE, device.id, Kind.META),
        kind=Kind.META.value,
        reason="not JSON",
        raw=f"{{{word}-malformed",
        received_at=now,
    )
    ActionAttempt.objects.create(
        building_id=building_id,
        username="janitor",
        target_type="space",
        target_id=space_id,
        target_name=f"{title} floor",
        outcome=ActionAttempt.FAILED,
        reason=f"the {word} bridge was away",
    )
    ActionSeen.objects.create(
        building_id=building_id,
        topic=f"buildings/{building_id}/actions",
        name=f"Turn off the {word} floor",
        type="off",
        target_type="space",
        target_id=space_id,
        value={"transition_time": 5},
        created="2024-05-01T08:00:00.000000Z",
        received_at=now,
    )
    return Place(building_id, space_id, device.id, alarm.id, word)


@dataclass
class World:
    hq: Place  # Saffron House
    elsewhere: Place  # Cobalt Tower
    users: dict[str, User | None]
    sessions: dict[str, str | None]  # each person's session key: logged in once, used often

    def place(self, key: str) -> Place:
        return self.hq if key == HQ else self.elsewhere

    @property
    def places(self) -> list[Place]:
        return [self.hq, self.elsewhere]

    def client(self, role: str, **kwargs: Any) -> Client:
        client = Client(**kwargs)
        if self.sessions[role]:
            client.cookies[settings.SESSION_COOKIE_NAME] = self.sessions[role]
        return client

    def cookie(self, role: str) -> tuple[bytes, bytes] | None:
        """The session cookie as the person's browser sends it with a socket."""
        key = self.sessions[role]
        return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={key}".encode()) if key else None

    def url(self, row: Row, place: Place | None = None, **overrides: Any) -> str:
        """The row's URL, with ``place``'s objects (Saffron House's by default)."""
        place = place or self.hq
        values = {
            "building_id": place.building,
            "device_id": place.device,
            "alarm_id": place.alarm,
            "uidb64": "MQ",
            "token": "not-a-token",
            **dict(row.kwargs),
            **overrides,
        }
        return reverse(row.name, kwargs={name: values[name] for name in ROUTES[row.name]})

    def socket_path(self, route: str, **overrides: Any) -> str:
        values = {"building_id": self.hq.building, **overrides}
        return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), route)

    def forbidden(self, role: str, scope: str, page: str = HQ) -> list[str]:
        """The words a response of this scope must never show this person.

        ``page`` is the building a BUILDING-scoped URL or socket is about.
        """
        if scope == EVERYTHING and role == SUPERUSER:
            return []
        shown = {BUILDING: {page}, OVERVIEW: {HQ, ELSEWHERE}}.get(scope, set())
        shown &= set(HAS_A_ROLE_ON[role])
        words = []
        for key in (HQ, ELSEWHERE):
            place = self.place(key)
            if key not in shown:
                words.append(place.word)
            elif key not in SUPPORTS.get(role, ()):
                words.extend(place.support_words)
        return words


def build_world(hq: dict[Any, Any], people: People) -> World:
    """Saffron House (``hq``) and Cobalt Tower (Oscar's), furnished, and everyone logged in."""
    elsewhere = Building.objects.get(name="Elsewhere")  # Oscar's building, from make_people
    floor = Space.objects.create(building=elsewhere, name="Cobalt floor")
    users: dict[str, User | None] = {
        ANONYMOUS: None,
        OUTSIDER: people.outsider,
        VIEWER: people.viewer,
        OPERATOR: people.operator,
        SUPPORT: people.support,
        STAFF: User.objects.create_user("stan", password=PASSWORD, is_staff=True),
        SUPERUSER: User.objects.create_superuser("root", password=PASSWORD),
    }
    sessions: dict[str, str | None] = {}
    for role, user in users.items():
        sessions[role] = None
        if user is not None:
            client = Client()
            client.force_login(user)
            sessions[role] = client.cookies[settings.SESSION_COOKIE_NAME].value
    return World(
        hq=furnish(hq[Scope.BUILDING], hq[Scope.SPACE], "saffron", "Saffron House"),
        elsewhere=furnish(elsewhere.id, floor.id, "cobalt", "Cobalt Tower"),
        users=users,
        sessions=sessions,
    )


@pytest.fixture(scope="class")
def shared_world(django_db_setup: None, django_db_blocker: Any) -> Iterator[World]:
    """One world for a class of HTTP tests; each test's changes are rolled back after it."""
    with (
        django_db_blocker.unblock(),
        override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]),
        transaction.atomic(),
    ):
        hq = make_building()
        yield build_world(hq, make_people(hq[Scope.BUILDING]))
        transaction.set_rollback(True)


@pytest.fixture
def world(shared_world: World, db: None) -> World:
    """The class's world, inside a transaction of this test's own (``db``)."""
    return shared_world


def body(response: Any) -> str:
    raw = b"".join(response.streaming_content) if response.streaming else response.content
    return raw.decode(errors="replace")


def request(client: Client, row: Row, url: str, data: dict[str, Any]) -> Any:
    return client.get(url) if row.method == GET else client.post(url, data)


def assert_outcome(response: Any, expected: int | str, what: str) -> None:
    status = response.status_code
    if expected in (LOGIN, ADMIN):
        login = reverse("login" if expected == LOGIN else "admin:login")
        location = response.get("Location", "")
        assert status == 302 and location.startswith(f"{login}?next="), (
            f"{what}: expected a redirect to {login}, got {status} {location}"
        )
    else:
        assert status == expected, f"{what}: expected {expected}, got {status}"


def assert_shows_nothing_forbidden(text: str, words: list[str], what: str) -> None:
    found = [word for word in words if word in text.lower()]
    assert not found, f"{what} shows {found}"


def test_every_url_and_socket_route_has_a_row_in_the_matrix():
    rows = {r.name for r in MATRIX}
    ours = {name for name in ROUTES if not name.startswith(ADMIN_NAMESPACE)}
    assert ours - rows == set(), "URLs without a row in the access matrix"
    assert rows - set(ROUTES) == set(), "rows for URLs the project no longer has"
    assert {"admin:index", "admin:dashboard_building_changelist"} <= rows
    assert {str(route.pattern) for route in websocket_urlpatterns} == {s.route for s in SOCKETS}
    assert {r.name for r in MATRIX if r.method == POST} >= set(POSTS)


BUILDING_ROWS = [
    r for r in MATRIX if "building_id" in ROUTES[r.name] and r.outcome(SUPERUSER) != 405
]
ONE_ROW_PER_URL = list({(r.name, r.kwargs): r for r in MATRIX}.values())

# Saffron House's URLs with Cobalt Tower's objects in the path or the form. The superuser has
# every role on both, so only the building in the URL stands between them; Olivia has a role
# on Saffron House only. Nothing of Cobalt Tower is shown or changed.
# fmt: off
CROSSINGS = [
    # what                                           URL name                  method status
    ("Cobalt's device on Saffron's device page",     "device",                 GET,   404),
    ("Cobalt's alarm acknowledged through Saffron",  "alarm_acknowledge",      POST,  404),
    ("Cobalt's alarm cleared through Saffron",       "alarm_clear",            POST,  404),
    ("Cobalt's alarm in Saffron's bulk form",        "alarm_acknowledge_many", POST,  303),
    ("an action for Cobalt's device from Saffron",   "send_action",            POST,  404),
    ("a reset of Cobalt's space's count from Saffron", "reset_count",          POST,  404),
]
# fmt: on


class TestEveryUrl:
    """Every URL and form, for everyone; one world per class, each test rolled back."""

    @pytest.fixture(autouse=True)
    def _fresh_cache(self, settings: Any) -> None:
        # Login failures are counted in the cache: each test starts with none.
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "LOCATION": uuid.uuid4().hex,
            }
        }

    @pytest.fixture(autouse=True)
    def _bridge_acknowledges_actions(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # No bridge runs here: stand in for it and acknowledge every publish, so an
        # operator's action finishes at once.
        async def acknowledged(building_id: Any, request: dict[str, Any], timeout: float) -> dict:
            attempts = request["attempts"]
            return {
                "results": [{"attempt": a["attempt"], "ok": True, "reason": ""} for a in attempts]
            }

        monkeypatch.setattr(layer, "request_publish", acknowledged)

    @pytest.mark.parametrize(
        ("row", "role"),
        [pytest.param(r, role, id=f"{r.label} as {role}") for r in MATRIX for role in ROLES],
    )
    def test_each_person_is_let_in_or_refused_as_their_role_says(self, row, role, world):
        what = f"{row.label} as {role}"
        response = request(world.client(role), row, world.url(row), form(row.name, world.hq))

        expected = row.outcome(role)
        assert_outcome(response, expected, what)
        assert_shows_nothing_forbidden(body(response), world.forbidden(role, row.scope), what)
        if row.method == POST and row.name in EFFECTS:
            assert EFFECTS[row.name](world) == (expected not in REFUSALS), f"{what}: effect"

    @pytest.mark.parametrize(
        ("row", "role"),
        [pytest.param(r, role, id=f"{r.label} as {role}") for r in BUILDING_ROWS for role in ROLES],
    )
    def test_a_building_that_does_not_exist_is_not_found_by_anyone_logged_in(
        self, row, role, world
    ):
        url = world.url(row, building_id=uuid.uuid4())
        response = request(world.client(role), row, url, form(row.name, world.hq))
        assert_outcome(response, LOGIN if role == ANONYMOUS else 404, f"{row.label} as {role}")

    @pytest.mark.parametrize("role", [OPERATOR, SUPERUSER])
    @pytest.mark.parametrize(
        ("what", "name", "method", "status"), [pytest.param(*c, id=c[0]) for c in CROSSINGS]
    )
    def test_a_buildings_url_never_reaches_another_buildings_objects(
        self, what, name, method, status, role, world
    ):
        saffron, cobalt = world.hq, world.elsewhere
        row = Row(name, method, (), BUILDING)
        url = world.url(row, place=cobalt, building_id=saffron.building)
        response = request(world.client(role), row, url, form(name, cobalt))

        assert response.status_code == status, f"{what} as {role}"
        assert_shows_nothing_forbidden(body(response), [cobalt.word], f"{what} as {role}")
        assert FaultAlarm.objects.get(pk=cobalt.alarm).state == FaultAlarm.OPEN
        assert not ActionAttempt.objects.filter(target_id=cobalt.device).exists()

    @pytest.mark.parametrize("role", [OUTSIDER, STAFF])
    def test_a_stranger_sending_an_action_learns_nothing_of_the_building(self, role, world):
        # The hole the matrix found: the refusal was the action form, naming the target.
        client = world.client(role)
        url = reverse("send_action", args=[world.hq.building])
        real = client.post(url, form("send_action", world.hq))
        made_up = client.post(url, form("send_action", replace(world.hq, device=uuid.uuid4())))

        assert real.status_code == made_up.status_code == 403
        assert body(real) == body(made_up)  # a real device and a made-up one look the same
        assert_shows_nothing_forbidden(body(real), [world.hq.word], role)
        [refusal] = ActionAttempt.objects.filter(outcome=ActionAttempt.REFUSED)
        assert refusal.user == world.users[role]  # still in Saffron House's log

    @pytest.mark.parametrize(
        "row", [pytest.param(r, id=r.label) for r in BUILDING_ROWS if r.method == GET]
    )
    def test_filters_naming_another_buildings_objects_show_nothing_of_it(self, row, world):
        cobalt = world.elsewhere
        query = {
            "device": cobalt.device,
            "space": cobalt.space,
            "target": cobalt.space,
            "signature": RejectedPayload.objects.get(building_id=cobalt.building).signature,
            "user": "oscar",
        }
        response = world.client(SUPERUSER).get(world.url(row), query)
        assert response.status_code == 200, row.label
        assert_shows_nothing_forbidden(body(response), [cobalt.word], row.label)

    @pytest.mark.parametrize("row", [pytest.param(r, id=r.label) for r in ONE_ROW_PER_URL])
    def test_no_post_is_taken_without_the_csrf_token(self, row, world):
        client = world.client(SUPERUSER, enforce_csrf_checks=True)
        client.get(reverse("login"))  # a page with a form: the browser holds the CSRF cookie
        token = client.cookies[settings.CSRF_COOKIE_NAME].value
        url = world.url(row)
        data = form(row.name, world.hq)

        refused = client.post(url, data)
        assert refused.status_code == 403, f"POST {row.label} without the token"
        assert "CSRF verification failed" in body(refused)
        if row.name in EFFECTS:
            assert not EFFECTS[row.name](world)

        posts = [r for r in MATRIX if r.name == row.name and r.method == POST]
        if posts:  # the same form with its token gets through, as the matrix says
            accepted = client.post(url, data, HTTP_X_CSRFTOKEN=token)
            assert_outcome(accepted, posts[0].outcome(SUPERUSER), f"POST {row.label} + token")


# --- WebSockets -----------------------------------------------------------------------------------


@pytest.fixture
def live_world(hq: dict[Any, Any], people: People) -> World:
    """The same world in committed transactions: consumers read it from other threads."""
    return build_world(hq, people)


class BridgeStandIn:
    """The bridges' side of the channel layer: hears the snapshot requests pages send."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.groups: list[str] = []

    async def join(self, *building_ids: uuid.UUID) -> BridgeStandIn:
        self.channel = await self.layer.new_channel("bridge.")
        for building_id in building_ids:
            self.groups.append(layer.bridge_group(building_id))
            await self.layer.group_add(self.groups[-1], self.channel)
        return self

    async def requests(self, count: int, timeout: float = 5) -> dict[uuid.UUID, list[str]]:
        """The pages' snapshot requests, {building: audiences}: ``count`` of them, or all
        that arrive within ``timeout``."""
        heard: dict[uuid.UUID, list[str]] = {}
        with contextlib.suppress(TimeoutError):
            while count == 0 or len(heard) < count:
                message = await asyncio.wait_for(self.layer.receive(self.channel), timeout)
                assert message["type"] == "snapshot.request"
                heard[uuid.UUID(message["building"])] = message["audiences"]
        return heard

    async def leave(self) -> None:
        for group in self.groups:
            await self.layer.group_discard(group, self.channel)


@pytest.fixture
async def sockets() -> AsyncIterator[Callable[..., Any]]:
    """Open a socket through the site's ASGI application; all are disconnected at the end."""
    opened: list[WebsocketCommunicator] = []

    async def open_socket(
        path: str, cookie: tuple[bytes, bytes] | None, origin: bytes | None = OUR_ORIGIN
    ) -> tuple[WebsocketCommunicator, bool]:
        headers = [(b"origin", origin)] if origin is not None else []
        if cookie is not None:
            headers.append(cookie)
        communicator = WebsocketCommunicator(application, path, headers=headers)
        opened.append(communicator)
        connected, _ = await communicator.connect()
        return communicator, connected

    yield open_socket
    for communicator in opened:
        await communicator.disconnect()


def refusal_code(role: str) -> int:
    return NOT_LOGGED_IN if role == ANONYMOUS else NO_ACCESS


async def closed_with(communicator: WebsocketCommunicator) -> int | None:
    message = await communicator.receive_output(5)
    assert message["type"] == "websocket.close", message
    return message.get("code")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("socket", "role"),
    [pytest.param(s, role, id=f"{s.route} as {role}") for s in SOCKETS for role in ROLES],
)
async def test_each_person_follows_only_the_buildings_their_role_allows(
    socket, role, live_world, sockets
):
    world = live_world
    bridge = await BridgeStandIn().join(world.hq.building, world.elsewhere.building)
    try:
        communicator, connected = await sockets(world.socket_path(socket.route), world.cookie(role))
        assert connected  # our own origin: who may follow what is decided next

        expected = socket.outcome(role)
        if expected == REFUSED:
            assert await closed_with(communicator) == refusal_code(role)
            assert await bridge.requests(0, timeout=0.05) == {}
        else:
            wanted = {world.place(key).building: audiences for key, audiences in expected.items()}
            assert await bridge.requests(len(wanted)) == wanted
            assert await communicator.receive_nothing(0.05)  # and it stays open
    finally:
        await bridge.leave()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("socket", [pytest.param(s, id=s.route) for s in SOCKETS])
async def test_no_socket_opens_from_another_origin(socket, live_world, sockets):
    path, cookie = live_world.socket_path(socket.route), live_world.cookie(SUPERUSER)
    for origin in FOREIGN_ORIGINS:
        _, connected = await sockets(path, cookie, origin)
        assert not connected, origin
    _, connected = await sockets(path, cookie)
    assert connected  # the same person, from the dashboard's own pages


@pytest.mark.django_db(transaction=True)
async def test_a_socket_for_a_building_that_does_not_exist_is_closed(live_world, sockets):
    path = live_world.socket_path(SOCKETS[0].route, building_id=uuid.uuid4())
    for role in (ANONYMOUS, OUTSIDER, VIEWER, SUPPORT, STAFF, SUPERUSER):
        communicator, _ = await sockets(path, live_world.cookie(role))
        assert await closed_with(communicator) == refusal_code(role), role


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
async def test_through_a_real_bridge_each_page_hears_only_what_it_may_show(
    live_world, sockets, running_bridge, publish
):
    world = live_world
    bridge = await running_bridge()
    for place in world.places:
        await subscribed(bridge, place.building)
    # Who opens which page: a building's (HQ or ELSEWHERE) or the overview (None).
    pages = [
        (VIEWER, HQ),
        (OPERATOR, HQ),
        (SUPPORT, HQ),
        (SUPERUSER, HQ),
        (OUTSIDER, ELSEWHERE),
        (SUPERUSER, ELSEWHERE),
        (OUTSIDER, None),
        (VIEWER, None),
        (SUPPORT, None),
        (SUPERUSER, None),
    ]
    opened: list[tuple[str, str | None, WebsocketCommunicator, list[str]]] = []
    for role, key in pages:
        if key is None:
            path = world.socket_path(SOCKETS[1].route)
        else:
            path = world.socket_path(SOCKETS[0].route, building_id=world.place(key).building)
        communicator, connected = await sockets(path, world.cookie(role))
        assert connected
        opened.append((role, key, communicator, []))

    # Live news for both buildings: a meta value, a rejection and a head count.
    head_counts = {HQ: 17, ELSEWHERE: 23}
    for key, count in head_counts.items():
        place = world.place(key)
        meta = [{"name": "firmware", "value": f"{place.word}-live", "timestamp": TIMESTAMP}]
        refusal = {
            **seed.REJECTED,
            "error": {
                **seed.REJECTED["error"],
                "message": f'Invalid payload. Value: "{place.word}-rejected-live".',
            },
        }
        await send(publish, build_topic(Scope.DEVICE, place.device, Kind.META), meta)
        await send(publish, build_topic(Scope.DEVICE, place.device, Kind.REJECTED_META), refusal)
        await send(
            publish,
            build_topic(Scope.BUILDING, place.building, Kind.HEAD_COUNT),
            seed.headcount("headcount", count),
        )

    async def hear(communicator: WebsocketCommunicator, frames: list[str], text: str) -> None:
        while not any(text in frame for frame in frames):
            frames.append(layer.unpack(await communicator.receive_from(5)))  # maybe deflated
            await communicator.send_to(text_data=consumers.ACK)

    for role, key, communicator, frames in opened:
        if key is not None:  # a building's page: its live values, and support its rejections
            word = world.place(key).word
            await hear(communicator, frames, f"{word}-live")
            if key in SUPPORTS.get(role, ()):
                await hear(communicator, frames, f"{word}-rejected-live")
        else:  # the overview: the head count of each building followed
            for followed in HAS_A_ROLE_ON[role]:
                await hear(
                    communicator,
                    frames,
                    f'class="head-count" hx-swap-oob="true">{head_counts[followed]}<',
                )
    for role, key, communicator, frames in opened:
        while not await communicator.receive_nothing(0.2):
            frames.append(layer.unpack(await communicator.receive_from(1)))
        words = world.forbidden(role, BUILDING, key) if key else world.forbidden(role, OVERVIEW)
        page = f"{role}'s page of {key}" if key else f"{role}'s overview"
        assert_shows_nothing_forbidden("\n".join(frames), words, page)
