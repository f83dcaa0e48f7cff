"""Bump a building's inventory version when its spaces, areas or devices change."""

from __future__ import annotations

from django.db.models import F
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from dashboard.models import Area, Building, Device, Space


@receiver([post_save, post_delete], sender=Space)
@receiver([post_save, post_delete], sender=Area)
@receiver([post_save, post_delete], sender=Device)
def bump_inventory_version(sender: type, instance: Space | Area | Device, **kwargs: object) -> None:
    Building.objects.filter(pk=instance.building_id).update(
        inventory_version=F("inventory_version") + 1
    )
