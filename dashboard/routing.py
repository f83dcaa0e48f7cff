"""WebSocket routes: one socket per open page."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path, reverse

from dashboard import consumers

websocket_urlpatterns: list[URLPattern] = [
    path(
        "ws/buildings/<uuid:building_id>/",
        consumers.BuildingConsumer.as_asgi(),
        name="ws_building",
    ),
    path("ws/overview/", consumers.OverviewConsumer.as_asgi(), name="ws_overview"),
]
# The URL conf socket_url reverses in: the socket routes are not in the site's urls.py.
urlpatterns = websocket_urlpatterns


def socket_url(name: str, **kwargs: Any) -> str:
    """The path of a named WebSocket route, for a page's ``ws-connect``."""
    return reverse(name, urlconf=__name__, kwargs=kwargs)
