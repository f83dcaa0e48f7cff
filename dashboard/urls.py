from __future__ import annotations

from django.urls import path

from dashboard import actions, activity, views

urlpatterns = [
    path("", views.home, name="home"),
    path("buildings/<uuid:building_id>/", views.building, name="building"),
    path(
        "buildings/<uuid:building_id>/devices/<uuid:device_id>/",
        views.device,
        name="device",
    ),
    path("buildings/<uuid:building_id>/actions/", actions.send_action, name="send_action"),
    path("buildings/<uuid:building_id>/activity/", activity.activity, name="activity"),
    path("buildings/<uuid:building_id>/activity.csv", activity.activity_csv, name="activity_csv"),
]
