"""Who may do what on which building: the one rule, for pages and sockets alike.

``roles_on`` is the rule; pages ask ``building_for`` (the building, or 404/403 as a page
answers), sockets, which have a user but no request, ask ``roles_on`` directly.

A page of a building shows the building's clock: ``building_for`` activates its time zone for
the rest of the request (templates' date filters, ``timezone.localdate()``, date filters'
parsing), and ``TimeZoneMiddleware`` puts the default back for the next one.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, PermissionsMixin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponseBase
from django.utils import timezone

from dashboard.models import Building, Role

User = AbstractBaseUser | AnonymousUser

# A role grants itself and what it includes; every role includes viewing.
INCLUDES = {
    Role.VIEWER: {Role.VIEWER},
    Role.OPERATOR: {Role.VIEWER, Role.OPERATOR},
    Role.SUPPORT: {Role.VIEWER, Role.SUPPORT},
}
NO_ROLE = "You have no role on this building."


def _superuser(user: User) -> bool:
    return isinstance(user, PermissionsMixin) and user.is_superuser


def roles_on(user: User, building_id: uuid.UUID | str) -> set[str]:
    """Every role the user effectively holds on the building (all of them for superusers)."""
    if not user.is_authenticated or not user.is_active:
        return set()
    if _superuser(user):
        return set(INCLUDES)
    held = Role.objects.filter(user_id=user.pk, building_id=building_id).values_list(
        "role", flat=True
    )
    return set().union(*(INCLUDES[role] for role in held))


def visible_buildings(user: User) -> QuerySet[Building]:
    """Buildings the user may see."""
    if not user.is_authenticated or not user.is_active:
        return Building.objects.none()
    if _superuser(user):
        return Building.objects.all()
    return Building.objects.filter(roles__user_id=user.pk).distinct()


def require(
    roles: set[str], needs: str | Collection[str] = Role.VIEWER, refusal: str = NO_ROLE
) -> None:
    """Refuse (403) unless ``roles`` hold ``needs``, or one of them when it is a collection."""
    wanted = {needs} if isinstance(needs, str) else set(needs)
    if not roles & wanted:
        raise PermissionDenied(refusal)


def building_for(
    request: HttpRequest,
    building_id: uuid.UUID,
    needs: str | Collection[str] = Role.VIEWER,
    refusal: str = NO_ROLE,
) -> tuple[Building, set[str]]:
    """The building and the user's roles on it; 404 when there is none, 403 without ``needs``."""
    building = Building.objects.filter(pk=building_id).first()
    if building is None:
        raise Http404("No such building.")
    roles = roles_on(request.user, building_id)
    require(roles, needs, refusal)
    timezone.activate(building.zone)
    return building, roles


async def abuilding_for(
    request: HttpRequest,
    building_id: uuid.UUID,
    needs: str | Collection[str] = Role.VIEWER,
    refusal: str = NO_ROLE,
) -> tuple[Building, set[str]]:
    """``building_for`` for asynchronous views."""
    building, roles = await sync_to_async(building_for)(request, building_id, needs, refusal)
    timezone.activate(building.zone)  # here too: the view's own context, not the thread's
    return building, roles


class TimeZoneMiddleware:
    """Each request starts and ends in the default zone: a building's is never left active
    for the next request on the thread (the test client's, a WSGI server's)."""

    sync_capable = True
    async_capable = True

    def __init__(
        self, get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]
    ) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        timezone.deactivate()
        try:
            response = self.get_response(request)
            assert not isinstance(response, HttpResponseBase)
            return await response
        finally:
            timezone.deactivate()
