"""Logging in, with failed attempts throttled per username and per client address.

After ``LOGIN_FAILURE_LIMIT`` failures within ``LOGIN_FAILURE_WINDOW_SECONDS`` (counted from
the first failure) further attempts for that username or from that address are refused
without checking the password, until the window ends; guessing stops there. The counts live
in Django's cache, which is Redis when ``REDIS_URL`` is set, so every web process shares them.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.http import HttpRequest, HttpResponse
from django.utils.translation import ngettext

logger = logging.getLogger(__name__)


def _key(kind: str, value: str) -> str:
    # Hashed: usernames are arbitrary text, and cache keys should be short and plain.
    return f"login-failures:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


class LoginThrottle:
    """Failed logins of one attempt's username and client address.

    Each counter is two cache entries made with the window as their timeout: the count,
    raised with ``incr`` (atomic in Redis, so parallel guesses are all counted), and the time
    the window ends, to tell people how long to wait.
    """

    def __init__(self, username: str, address: str) -> None:
        self.username = username
        self.address = address
        self.user_key = _key("user", username.casefold()) if username else None
        self.counters = [k for k in (self.user_key, _key("address", address)) if k]

    def refused_seconds(self) -> float:
        """How long attempts stay refused; 0 when they may go ahead."""
        now = time.time()
        held = cache.get_many([f"{k}:{part}" for k in self.counters for part in ("n", "until")])
        wait = 0.0
        for key in self.counters:
            if held.get(f"{key}:n", 0) >= settings.LOGIN_FAILURE_LIMIT:
                # The end time may already be gone when the count is about to expire too.
                wait = max(wait, held.get(f"{key}:until", now + 1) - now, 1)
        return wait

    def failed(self) -> None:
        now = time.time()
        window = settings.LOGIN_FAILURE_WINDOW_SECONDS
        for key in self.counters:
            cache.add(f"{key}:until", now + window, window)
            cache.add(f"{key}:n", 0, window)
            try:
                count = cache.incr(f"{key}:n")
            except ValueError:  # expired between add and incr
                count = 1
                cache.set(f"{key}:n", count, window)
            if count == settings.LOGIN_FAILURE_LIMIT:
                logger.warning(
                    "Too many failed logins %s; refusing further attempts for up to %d s",
                    f"for username {self.username!r}"
                    if key == self.user_key
                    else f"from {self.address}",
                    window,
                )

    def succeeded(self) -> None:
        if self.user_key:
            cache.delete_many([f"{self.user_key}:n", f"{self.user_key}:until"])


def client_address(request: HttpRequest) -> str:
    # daphne puts the peer in REMOTE_ADDR; behind a proxy that is the proxy's address.
    return request.META.get("REMOTE_ADDR") or "unknown"


class ThrottledAuthenticationForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Your username and password didn't match. Please try again.",
        "throttled": "Too many failed logins; try again in %(minutes)s.",
    }

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        # LoginView always passes the request; a form built without one throttles as "unknown".
        address = client_address(self.request) if self.request is not None else "unknown"
        throttle = LoginThrottle(username, address)
        wait = throttle.refused_seconds()
        if wait:
            minutes = math.ceil(wait / 60)
            raise ValidationError(
                self.error_messages["throttled"],
                code="throttled",
                params={"minutes": ngettext("%d minute", "%d minutes", minutes) % minutes},
            )
        try:
            cleaned = super().clean()
        except ValidationError as error:
            if error.code == "invalid_login":
                throttle.failed()
            raise
        if self.user_cache is not None:
            throttle.succeeded()
        return cleaned


class ThrottledLoginView(LoginView):
    form_class = ThrottledAuthenticationForm

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_invalid(form)
        if form.has_error(NON_FIELD_ERRORS, "throttled"):
            response.status_code = 429  # Too Many Requests, for proxies and monitoring
        return response
