"""WebSocket routes: one socket per open page."""

from __future__ import annotations

from django.urls import URLPattern, path

from dashboard import consumers

websocket_urlpatterns: list[URLPattern] = [
    path("ws/buildings/<uuid:building_id>/", consumers.BuildingConsumer.as_asgi()),
    path("ws/overview/", consumers.OverviewConsumer.as_asgi()),
]
