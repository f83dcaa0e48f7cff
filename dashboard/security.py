"""Content-Security-Policy on every response (Django 5.2 has no CSP of its own).

The pages load scripts and styles only from static files and keep data in ``json_script``
blocks (which a browser does not execute), so the policy allows no inline script or style
and nothing from other origins. ``connect-src 'self'`` covers the live WebSockets to the same
host and port (CSP Level 3; tests/test_security.py checks it in Chromium). htmx is told not
to inject its indicator ``<style>`` (the htmx-config meta in base.html); uPlot sizes its
elements through the CSSOM, which ``style-src`` does not restrict.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.deprecation import MiddlewareMixin

POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",  # data: for the empty favicon in base.html
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """Adds ``Content-Security-Policy`` unless a view set its own.

    ``MiddlewareMixin`` makes it work in both sync and async stacks without a thread hop.
    """

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        if settings.DEBUG and response.status_code >= 400:
            # Django's debug error pages are built on inline styles and scripts.
            return response
        response.headers.setdefault("Content-Security-Policy", POLICY)
        return response
