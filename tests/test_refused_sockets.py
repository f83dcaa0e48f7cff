"""A live page whose session ended or whose access was removed, against ``serve`` (daphne):
the socket closes with a code the page understands, the server logs one line, and the page
does not reconnect in a loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from dashboard.consumers import NO_ACCESS, NOT_LOGGED_IN
from tests.factories import PASSWORD
from tests.served import ServedDashboard

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, mosquitto) -> Iterator[tuple[ServedDashboard, dict[str, str]]]:
    served = ServedDashboard(tmp_path_factory.mktemp("served"), mosquitto.url, LOG_LEVEL="INFO")
    with served.serving() as hq:
        yield served, hq


def session_cookie(served: ServedDashboard, username: str) -> str:
    """A ``Cookie`` header for a fresh session of ``username``."""
    script = (
        "from django.conf import settings; from django.contrib.auth.models import User; "
        "from django.test import Client; c = Client(); "
        f"c.force_login(User.objects.get(username={username!r})); "
        "name = settings.SESSION_COOKIE_NAME; print(f'{name}={c.cookies[name].value}')"
    )
    return served.manage("shell", "-c", script).strip().splitlines()[-1]


def close_code(served: ServedDashboard, path: str, cookie: str | None = None) -> int | None:
    """The code the server closes the socket with, as a client sees it."""
    headers = {"Cookie": cookie} if cookie else {}
    url = served.url.replace("http://", "ws://") + path
    with connect(url, origin=served.url, additional_headers=headers, open_timeout=10) as socket:
        with pytest.raises(ConnectionClosed):
            socket.recv(timeout=10)
        return socket.close_code


def test_refused_sockets_close_with_4001_or_4003_and_one_log_line_each(dashboard):
    served, hq = dashboard
    path = f"/ws/buildings/{hq['building']}/"
    logged_before = len(served.output)

    assert close_code(served, path) == NOT_LOGGED_IN
    assert close_code(served, path, session_cookie(served, "oscar")) == NO_ACCESS
    assert close_code(served, "/ws/overview/") == NOT_LOGGED_IN

    served.wait_for_output(r"refused: not logged in\n(.|\n)*refused: not logged in")
    logged = "".join(served.output[logged_before:])
    assert "Traceback" not in logged and "invalid close code" not in logged, logged
    refusals = [line for line in logged.splitlines() if "refused" in line]
    assert len(refusals) == 3, logged
    assert f"websocket {path} refused: no access for oscar" in logged


def test_a_page_whose_session_ended_goes_to_the_login_page_and_stays_there(chromium, dashboard):
    served, hq = dashboard
    page = chromium.new_page()
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.goto(f"{served.url}/accounts/login/")
    page.get_by_label("Username").fill("victor")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    building_page = f"/buildings/{hq['building']}/"
    page.goto(served.url + building_page)
    expect(page.locator("#page-status")).to_contain_text("connected")

    # The session ends (logged out elsewhere, expired) and the server restarts: the page
    # reconnects, is refused, and asks its person to log in again, to come back here after.
    served.manage(
        "shell",
        "-c",
        "from django.contrib.sessions.models import Session; Session.objects.all().delete()",
    )
    served.restart()
    expect(page).to_have_url(
        f"{served.url}/accounts/login/?next={building_page.replace('/', '%2F')}",
        timeout=15000,
    )
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    sockets.clear()
    time.sleep(2)  # a page retrying, or sent back, would have opened sockets by now
    assert sockets == []
    assert page.url.startswith(f"{served.url}/accounts/login/")

    page.get_by_label("Username").fill("victor")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(served.url + building_page)
    expect(page.locator("#page-status")).to_contain_text("connected")
    page.close()


def test_a_page_whose_access_was_removed_says_so_and_does_not_reconnect(chromium, dashboard):
    served, hq = dashboard
    page = chromium.new_page()
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.goto(f"{served.url}/accounts/login/")
    page.get_by_label("Username").fill("sam")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{served.url}/buildings/{hq['building']}/")
    expect(page.locator("#page-status")).to_contain_text("connected")

    served.manage(
        "shell",
        "-c",
        "from dashboard.models import Role; Role.objects.filter(user__username='sam').delete()",
    )
    served.restart()
    expect(page.locator("#page-status")).to_contain_text("no longer have access", timeout=15000)
    sockets.clear()
    time.sleep(2)  # a page retrying would have opened more sockets by now
    assert sockets == []
    page.close()
