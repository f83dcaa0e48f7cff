"""Access control and secrets: security headers and the Content-Security-Policy, cookies,
CSRF, login throttling, a clean ``check --deploy``, and secrets that never show.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_login_failed
from django.test import Client
from django.urls import reverse

from dashboard.bridge.broker_url import parse_broker_url
from dashboard.contract.topics import Scope
from dashboard.models import Building
from dashboard.security import POLICY
from tests import brokers
from tests.factories import PASSWORD
from tests.served import ServedDashboard

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "SECRET_KEY": "k" * 20 + secrets.token_urlsafe(50),
    "DEBUG": "false",
    "HTTPS": "true",
    "ALLOWED_HOSTS": "dashboard.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://dashboard.example.com",
    "MQTT_URL": "",
    "REDIS_URL": "",
}


@pytest.fixture(autouse=True)
def _fresh_cache(settings: Any) -> None:
    # Failure counts live in the cache: each test gets an empty one of its own (and never
    # the Redis of a REDIS_URL in the environment, which clearing would flush).
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": secrets.token_hex(8),
        }
    }


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def superuser() -> User:
    return User.objects.create_superuser("root", password=PASSWORD)


class InlineCode(HTMLParser):
    """Collects what a policy without 'unsafe-inline' would block: inline scripts (JSON data
    blocks excepted), <style> elements, style="" and on*="" attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script" and "src" not in named and named.get("type") != "application/json":
            self.found.append(f"inline <script> {attrs}")
        if tag == "style":
            self.found.append("<style> element")
        for name, _ in attrs:
            if name == "style" or name.startswith("on"):
                self.found.append(f"<{tag} {name}=…>")


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    return parser.found


def manage_env(**overrides: str) -> dict[str, str]:
    env = {**os.environ, **PRODUCTION, **overrides}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def production_settings(**overrides: str) -> dict[str, Any]:
    """Settings as a separate process reads them from the environment."""
    names = [
        "SESSION_COOKIE_SECURE",
        "SESSION_COOKIE_HTTPONLY",
        "SESSION_COOKIE_SAMESITE",
        "CSRF_COOKIE_SECURE",
        "CSRF_COOKIE_SAMESITE",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_PROXY_SSL_HEADER",
    ]
    script = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**manage_env(**overrides), "DJANGO_SETTINGS_MODULE": "gooee_site.settings"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


# --- headers and the Content-Security-Policy ----------------------------------------------


@pytest.mark.django_db
def test_pages_carry_a_policy_without_inline_code_and_need_none(hq, people):
    building, device = hq[Scope.BUILDING], hq[Scope.DEVICE]
    root = logged_in(superuser())
    pages = [
        (Client(), reverse("login")),
        (logged_in(people.viewer), "/"),
        (logged_in(people.viewer), f"/buildings/{building}/"),
        (logged_in(people.support), f"/buildings/{building}/devices/{device}/"),
        (logged_in(people.support), f"/buildings/{building}/rejected/"),
        (root, "/admin/"),
        (root, "/admin/dashboard/building/"),
        (root, f"/admin/dashboard/building/{building}/change/"),
        (root, "/admin/auth/user/add/"),
    ]
    for client, url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        policy = response["Content-Security-Policy"]
        assert policy == POLICY, url
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert "script-src 'self'" in policy and "style-src 'self'" in policy
        assert inline_code(response.content.decode()) == [], url


@pytest.mark.django_db
def test_error_pages_and_redirects_carry_the_policy_too(client, settings, hq):
    for url in ("/", f"/buildings/{uuid.uuid4()}/", "/no-such-page/"):
        assert client.get(url)["Content-Security-Policy"] == POLICY
    # Except Django's debug error pages, which only work with their inline styles and scripts.
    settings.DEBUG = True
    assert "Content-Security-Policy" not in client.get("/no-such-page/")
    assert client.get(reverse("login"))["Content-Security-Policy"] == POLICY


@pytest.mark.django_db
def test_responses_forbid_framing_sniffing_and_cross_origin_referrers(client):
    response = client.get(reverse("login"))
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


# --- cookies, CSRF, deployment checks ---------------------------------------------------------


def test_https_makes_cookies_secure_and_turns_on_hsts_and_the_redirect():
    served = production_settings()
    assert served["SESSION_COOKIE_SECURE"] is True and served["CSRF_COOKIE_SECURE"] is True
    assert served["SECURE_SSL_REDIRECT"] is True
    assert served["SECURE_HSTS_SECONDS"] > 0 and served["SECURE_HSTS_INCLUDE_SUBDOMAINS"]
    assert served["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]

    without_proxy = production_settings(TRUSTED_PROXY_SSL_HEADER="false")
    assert without_proxy["SECURE_PROXY_SSL_HEADER"] is None
    plain = production_settings(HTTPS="false")
    assert plain["SESSION_COOKIE_SECURE"] is False and plain["CSRF_COOKIE_SECURE"] is False
    assert plain["SECURE_SSL_REDIRECT"] is False and plain["SECURE_HSTS_SECONDS"] == 0


@pytest.mark.django_db
def test_a_login_over_https_sets_secure_httponly_lax_cookies(settings, people):
    for name, value in production_settings().items():
        setattr(settings, name, tuple(value) if isinstance(value, list) else value)
    client = Client()
    page = client.get(reverse("login"), secure=True)
    csrf = page.cookies["csrftoken"].output()
    assert "Secure" in csrf and "SameSite=Lax" in csrf
    assert page["Strict-Transport-Security"].startswith("max-age=")
    assert "includeSubDomains" in page["Strict-Transport-Security"]
    # Plain HTTP is sent to HTTPS first.
    assert client.get(reverse("login")).status_code == 301

    response = client.post(
        reverse("login"), {"username": "victor", "password": PASSWORD}, secure=True
    )
    assert response.status_code == 302
    session = response.cookies["sessionid"].output()
    assert "Secure" in session and "HttpOnly" in session and "SameSite=Lax" in session


@pytest.mark.django_db
def test_the_login_form_needs_its_csrf_token(people):
    client = Client(enforce_csrf_checks=True)
    credentials = {"username": "victor", "password": PASSWORD}
    assert client.post(reverse("login"), credentials).status_code == 403

    client.get(reverse("login"))
    token = client.cookies["csrftoken"].value
    response = client.post(reverse("login"), {**credentials, "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == "/"


def test_check_deploy_is_clean_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=manage_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- login throttling --------------------------------------------------------------------------


def attempt(username: str, password: str, address: str) -> Any:
    return Client(REMOTE_ADDR=address).post(
        reverse("login"), {"username": username, "password": password}
    )


def refused(response: Any, minutes: str = "15 minutes") -> bool:
    message = f"Too many failed logins; try again in {minutes}."
    return response.status_code == 429 and message in response.content.decode()


@pytest.fixture
def password_checks() -> Iterator[list[str]]:
    """Usernames of the failed password checks, as Django signals them."""
    checked: list[str] = []

    def record(sender: Any, credentials: dict[str, Any], **kwargs: Any) -> None:
        checked.append(credentials["username"])

    user_login_failed.connect(record)
    yield checked
    user_login_failed.disconnect(record)


@pytest.mark.django_db
def test_five_failures_for_a_username_refuse_it_even_with_the_right_password(
    people, password_checks
):
    # Different addresses, and the name in different cases: one person's counter.
    for n, name in enumerate(["victor", "Victor", "VICTOR", "victor", "vIctor"]):
        response = attempt(name, "wrong", f"10.0.0.{n}")
        assert response.status_code == 200
        assert "didn&#x27;t match" in response.content.decode()
    assert len(password_checks) == 5

    assert refused(attempt("victor", PASSWORD, "10.0.0.9"))
    assert refused(attempt("victor", "another guess", "10.0.0.10"))
    assert len(password_checks) == 5  # refused before any password was checked
    # Someone else, from an address that has not failed, is unaffected.
    assert attempt("olivia", PASSWORD, "10.0.0.11").status_code == 302


@pytest.mark.django_db
def test_five_failures_from_an_address_refuse_every_username_from_it(people):
    for n in range(5):
        assert attempt(f"guess{n}", "wrong", "192.0.2.7").status_code == 200
    assert refused(attempt("olivia", PASSWORD, "192.0.2.7"))
    assert attempt("olivia", PASSWORD, "192.0.2.8").status_code == 302


@pytest.mark.django_db
def test_a_successful_login_clears_the_usernames_count(people):
    for n in range(4):
        attempt("victor", "wrong", f"10.1.0.{n}")
    assert attempt("victor", PASSWORD, "10.1.1.1").status_code == 302
    for n in range(4):
        assert attempt("victor", "wrong", f"10.2.0.{n}").status_code == 200
    assert attempt("victor", PASSWORD, "10.2.1.1").status_code == 302


@pytest.mark.django_db
def test_refusals_end_with_the_window(settings, people):
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 2
    for _ in range(5):
        attempt("victor", "wrong", "10.3.0.1")
    assert refused(attempt("victor", PASSWORD, "10.3.0.2"), "1 minute")
    time.sleep(2.2)
    assert attempt("victor", PASSWORD, "10.3.0.2").status_code == 302


# --- secrets never shown ----------------------------------------------------------------------


@pytest.mark.django_db
def test_secrets_never_show_in_pages_exports_headers_or_logs(settings, hq, people, caplog):
    secret_key = f"sentinel-secret-key-{secrets.token_hex(24)}"
    token = f"s3cret-token-{secrets.token_hex(12)}"
    settings.SECRET_KEY = secret_key
    settings.MQTT_URL = f"mqtt://authorization:{token}@127.0.0.1:1"
    settings.MQTT_BROKER = parse_broker_url(settings.MQTT_URL)
    caplog.set_level(logging.DEBUG, logger="django")
    caplog.set_level(logging.DEBUG, logger="dashboard")

    building, device = hq[Scope.BUILDING], hq[Scope.DEVICE]
    base = f"/buildings/{building}"
    pages = [
        "/",
        f"{base}/",
        f"{base}/devices/{device}/",
        f"{base}/alarms/",
        f"{base}/activity/",
        f"{base}/activity.csv",
        f"{base}/rejected/",
        f"{base}/rejected/check/",
        f"{base}/rejected/export.json",
        f"{base}/rejected/export.csv",
        f"/buildings/{uuid.uuid4()}/",  # 404
        "/no-such-page/",  # 404
    ]
    admin_pages = ["/admin/"] + [
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for model in admin.site._registry
    ]
    elsewhere = Building.objects.get(name="Elsewhere").id  # the outsider's building
    visits = [(logged_in(superuser()), [*pages, *admin_pages])]
    visits.append((logged_in(people.support), [*pages, f"/buildings/{elsewhere}/"]))  # 403

    statuses = set()
    for client, urls in visits:
        for url in urls:
            response = client.get(url)
            statuses.add(response.status_code)
            body = (
                b"".join(response.streaming_content) if response.streaming else response.content
            ).decode()
            headers = "\n".join(f"{k}: {v}" for k, v in response.items())
            for secret in (secret_key, token):
                assert secret not in body, url
                assert secret not in headers, url
    assert statuses == {200, 403, 404}
    assert caplog.records  # the 404s and the 403 were logged
    for secret in (secret_key, token):
        assert secret not in caplog.text


# --- in the browser ----------------------------------------------------------------------------
# Last in this module: once the module's Chromium is open, Django's ORM refuses to run in this
# thread (Playwright's event loop is running), so database tests must come before it.


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServedDashboard, dict[str, str]]]:
    if brokers.find_mosquitto() is None:
        pytest.fail("mosquitto not found: install Debian's mosquitto package (see README)")
    with brokers.MosquittoBroker() as broker:
        dashboard = ServedDashboard(tmp_path_factory.mktemp("secure"), broker.url)
        root = "from django.contrib.auth.models import User; "
        root += f"User.objects.create_superuser('root', password={PASSWORD!r})"
        with dashboard.serving(root) as hq:
            yield dashboard, hq


@pytest.mark.broker
def test_live_pages_and_the_admin_run_under_the_policy_in_chromium(chromium, served):
    dashboard, hq = served
    complaints: list[str] = []
    context = chromium.new_context()
    page = context.new_page()
    page.on("console", lambda message: complaints.append(f"console: {message.text}"))
    page.on("pageerror", lambda error: complaints.append(f"error: {error}"))
    page.on("websocket", lambda ws: complaints.append(f"websocket: {ws.url}"))
    # Reported by the browser for every blocked load or inline snippet, even silent ones.
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => "
        "console.error('Refused to load: ' + e.violatedDirective + ' ' + e.blockedURI));"
    )

    def csp_complaints() -> list[str]:
        return [c for c in complaints if "Content Security Policy" in c or "Refused to" in c]

    from playwright.sync_api import expect

    page.goto(f"{dashboard.url}/accounts/login/")
    page.get_by_label("Username").fill("victor")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Buildings")).to_be_visible()
    expect(page.locator("#page-status")).to_contain_text("connected")

    page.goto(f"{dashboard.url}/buildings/{hq['building']}/")
    expect(page.locator("#page-status")).to_contain_text("connected")
    expect(page.locator("#bridge-status")).to_contain_text("connected")
    expect(page.locator("#trend-chart .uplot")).to_be_visible()  # uPlot drew its chart
    # htmx was told not to inject its indicator <style>.
    assert page.locator("head style").count() == 0
    assert any(c.startswith("websocket: ws://127.0.0.1") for c in complaints)
    assert csp_complaints() == []

    page.get_by_role("button", name="Log out").click()
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    for path in (
        "/admin/",
        "/admin/dashboard/building/",
        f"/admin/dashboard/building/{hq['building']}/change/",
    ):
        page.goto(f"{dashboard.url}{path}")
        expect(page.locator("#site-name")).to_be_visible()
    # The inline's user field is an autocomplete (select2 on jQuery): open it.
    page.locator(".select2-selection").first.click()
    expect(page.locator(".select2-search__field")).to_be_visible()
    page.wait_for_timeout(300)  # let any late violation report arrive
    assert csp_complaints() == []
    context.close()
