"""Bump a building's inventory version when it, or its spaces, areas or devices change."""

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


@receiver(post_save, sender=Building)
def bump_building_version(
    sender: type, instance: Building, created: bool, **kwargs: object
) -> None:
    # Its name and time zone are in what the bridge renders: a change reaches the bridge so.
    if not created:
        Building.objects.filter(pk=instance.pk).update(inventory_version=F("inventory_version") + 1)
