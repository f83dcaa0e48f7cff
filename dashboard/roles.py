"""Who may do what on which building."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, PermissionsMixin
from django.db.models import QuerySet

from dashboard.models import Building, Role

# A role grants itself and what it includes; every role includes viewing.
INCLUDES = {
    Role.VIEWER: {Role.VIEWER},
    Role.OPERATOR: {Role.VIEWER, Role.OPERATOR},
    Role.SUPPORT: {Role.VIEWER, Role.SUPPORT},
}


def roles_on(user: AbstractBaseUser | AnonymousUser, building_id: uuid.UUID | str) -> set[str]:
    """Every role the user effectively holds on the building (all of them for superusers)."""
    if not user.is_authenticated or not user.is_active:
        return set()
    if isinstance(user, PermissionsMixin) and user.is_superuser:
        return set(INCLUDES)
    held = Role.objects.filter(user=user.pk, building_id=building_id).values_list("role", flat=True)
    return set().union(*(INCLUDES[role] for role in held))


def has_role(
    user: AbstractBaseUser | AnonymousUser, building_id: uuid.UUID | str, role: str
) -> bool:
    return role in roles_on(user, building_id)


def visible_buildings(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Building]:
    """Buildings the user may see."""
    if not user.is_authenticated or not user.is_active:
        return Building.objects.none()
    if isinstance(user, PermissionsMixin) and user.is_superuser:
        return Building.objects.all()
    return Building.objects.filter(roles__user=user.pk).distinct()
