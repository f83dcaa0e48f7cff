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


ROOMS = (
    "Boardroom",
    "Cafe",
    "Open Office",
    "Reception",
    "Meeting Room Fastnet",
    "Meeting Room Lundy",
    "Quiet Room",
    "Print Room",
    "Kitchen",
)


def tower_inventory(floors: int = 20, seed: int = 1) -> dict:
    """A building of ``floors`` floors ("Level 7") holding a room each of ``ROOMS``: 200
    spaces at 20 floors, in the inventory file's format; every room has a lamp, a
    Boardroom three."""
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"tower/{seed}")

    def gid(path: str) -> str:
        return str(uuid.uuid5(namespace, path))

    spaces, devices = [], []
    for floor in range(1, floors + 1):
        level = f"Level {floor}"
        spaces.append({"id": gid(level), "name": level})
        for room in ROOMS:
            space_id = gid(f"{level}/{room}")
            spaces.append({"id": space_id, "name": room, "parent": gid(level)})
            for n in range(1, (3 if room == "Boardroom" else 1) + 1):
                name = f"{level} {room} lamp {n}"
                devices.append(
                    {"id": gid(name), "name": name, "space": space_id, "type": "LED lamp"}
                )
    building = {"id": gid("building"), "name": "Tall Tower", "spaces": spaces, "devices": devices}
    return {"buildings": [{**building, "timezone": "Europe/London", "areas": []}]}


def make_tower(floors: int = 20) -> uuid.UUID:
    """``tower_inventory`` in the database, as ``import_inventory`` writes it; its id."""
    import json

    from dashboard.live.inventory import apply_inventory
    from dashboard.live.inventory_file import parse_inventory

    data = tower_inventory(floors)
    apply_inventory(parse_inventory(json.dumps(data)))
    return uuid.UUID(data["buildings"][0]["id"])
