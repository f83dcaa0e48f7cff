"""Bump a building's inventory version when it, or its spaces, areas or devices change;
keep the occupancy day rows in step with the building's clock and opening hours."""

from __future__ import annotations

import uuid
from functools import partial

from django.db import transaction
from django.db.models import F
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from dashboard.live import occupancy_days
from dashboard.live.occupancy_days import Opening
from dashboard.models import Area, Building, Device, OccupancyHour, Space

OPENING_BEFORE = "_opening_before"  # the stored zone and hours, noted on the instance saved


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


@receiver(pre_save, sender=Building)
def note_opening(sender: type, instance: Building, raw: bool = False, **kwargs: object) -> None:
    if raw:
        return
    stored = Building.objects.filter(pk=instance.pk).first()
    setattr(instance, OPENING_BEFORE, None if stored is None else Opening.of(stored))


@receiver(post_save, sender=Building)
def rebuild_days_on_new_opening(
    sender: type, instance: Building, created: bool, **kwargs: object
) -> None:
    # Another zone puts hours on other days, other opening hours average other hours: the
    # building's day rows are made again, once the edit is committed (a day at a time, so a
    # long history never holds the history writer up for long).
    before = getattr(instance, OPENING_BEFORE, None)
    if before is not None and before != Opening.of(instance):
        transaction.on_commit(partial(occupancy_days.rebuild, instance.pk))


@receiver(post_save, sender=OccupancyHour)
def refresh_day_of_hour(sender: type, instance: OccupancyHour, **kwargs: object) -> None:
    # An hour row saved through the ORM (a correction in the shell, a fixture) makes its day
    # row again; the history writer's upserts send no signal and do it for a whole batch.
    # As stored, whatever the caller gave (an id as text, say).
    key = (uuid.UUID(str(instance.building_id)), uuid.UUID(str(instance.entity_id)))
    occupancy_days.after_hours([(*key, instance.bucket)], occupancy_days.default_tables())
