from __future__ import annotations

from django.urls import path

from dashboard import actions, activity, alarms, health, inspector, occupancy, views

urlpatterns = [
    # For the operations team: no login (docs/deploy.md, "Health and metrics").
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics_view, name="metrics"),
    path("", views.home, name="home"),
    path("buildings/<uuid:building_id>/", views.building, name="building"),
    path(
        "buildings/<uuid:building_id>/devices/<uuid:device_id>/",
        views.device,
        name="device",
    ),
    path("buildings/<uuid:building_id>/actions/", actions.send_action, name="send_action"),
    path("buildings/<uuid:building_id>/reset/", actions.reset_count, name="reset_count"),
    path("buildings/<uuid:building_id>/actions/spaces/", views.space_picker, name="space_picker"),
    path("buildings/<uuid:building_id>/activity/", activity.activity, name="activity"),
    path("buildings/<uuid:building_id>/activity.csv", activity.activity_csv, name="activity_csv"),
    path("buildings/<uuid:building_id>/occupancy/", occupancy.occupancy, name="occupancy"),
    path(
        "buildings/<uuid:building_id>/occupancy.csv",
        occupancy.occupancy_csv,
        name="occupancy_csv",
    ),
    path("buildings/<uuid:building_id>/alarms/", alarms.alarm_list, name="alarms"),
    path(
        "buildings/<uuid:building_id>/alarms/<int:alarm_id>/acknowledge/",
        alarms.acknowledge,
        name="alarm_acknowledge",
    ),
    path(
        "buildings/<uuid:building_id>/alarms/<int:alarm_id>/clear/",
        alarms.clear,
        name="alarm_clear",
    ),
    path(
        "buildings/<uuid:building_id>/alarms/acknowledge/",
        alarms.acknowledge_many,
        name="alarm_acknowledge_many",
    ),
    path("buildings/<uuid:building_id>/rejected/", inspector.rejected, name="inspector"),
    path(
        "buildings/<uuid:building_id>/rejected/export.<str:fmt>",
        inspector.export,
        name="inspector_export",
    ),
    path("buildings/<uuid:building_id>/rejected/check/", inspector.check, name="inspector_check"),
]
