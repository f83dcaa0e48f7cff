from __future__ import annotations

from django.urls import path

from dashboard import views

urlpatterns = [
    path("", views.home, name="home"),
    path("buildings/<uuid:building_id>/", views.building, name="building"),
    path(
        "buildings/<uuid:building_id>/devices/<uuid:device_id>/",
        views.device,
        name="device",
    ),
]
