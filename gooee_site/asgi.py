"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gooee_site.settings")

from django.core.exceptions import ImproperlyConfigured

try:
    from django.core.asgi import get_asgi_application

    # Initialise Django (apps, models) before anything imports a model.
    django_asgi_app = get_asgi_application()
except ImproperlyConfigured as exc:
    sys.exit(f"configuration error: {exc}")

if "daphne.cli" in sys.modules:
    # `daphne gooee_site.asgi:application` cannot collect static files as `serve` does;
    # without them every page would answer 500.
    from dashboard.serving import not_collected_line, static_files_state

    if static_files_state() is not None:
        sys.exit(not_collected_line())

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator

from dashboard.routing import websocket_urlpatterns

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
