from __future__ import annotations

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Gooee dashboard"

    def ready(self) -> None:
        from dashboard import signals  # noqa: F401 - connects the inventory-change receivers
