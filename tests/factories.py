"""A small building and the people of the story: an operator, a viewer, support, an outsider."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.contrib.auth.models import User

from dashboard.contract.topics import Scope
from dashboard.models import Area, Building, Device, Role, Space

PASSWORD = "correct horse battery staple"


def make_building(name: str = "Headquarters") -> dict[str, uuid.UUID]:
    """A building with one space (capacity 40), one area (capacity 10) and one lamp."""
    building = Building.objects.create(name=name)
    space = Space.objects.create(building=building, name="Open Office", capacity=40)
    area = Area.objects.create(building=building, space=space, name="Lobby", capacity=10)
    device = Device.objects.create(building=building, space=space, name="Lamp 1")
    return {
        Scope.BUILDING: building.id,
        Scope.SPACE: space.id,
        Scope.AREA: area.id,
        Scope.DEVICE: device.id,
    }


@dataclass
class People:
    operator: User  # switches the building's lights
    viewer: User  # watches the building
    support: User  # helps integrators of the building
    outsider: User  # has a role on another building only


def make_people(building_id: uuid.UUID) -> People:
    elsewhere = Building.objects.create(name="Elsewhere")

    def person(username: str, building: uuid.UUID, role: str) -> User:
        user = User.objects.create_user(username, password=PASSWORD)
        Role.objects.create(user=user, building_id=building, role=role)
        return user

    return People(
        operator=person("olivia", building_id, Role.OPERATOR),
        viewer=person("victor", building_id, Role.VIEWER),
        support=person("sam", building_id, Role.SUPPORT),
        outsider=person("oscar", elsewhere.id, Role.VIEWER),
    )
