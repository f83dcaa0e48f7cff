"""An operator loads the buildings' inventory from a JSON file and grants people roles on them."""

from __future__ import annotations

import io
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from dashboard.access import roles_on
from dashboard.live.inventory import apply_inventory
from dashboard.live.inventory_file import InventoryError, parse_inventory
from dashboard.models import Area, Building, Device, Role, Space

pytestmark = pytest.mark.django_db

_NAMESPACE = uuid.UUID("0b7c4a52-3f0e-4d7c-9a52-6a0f4f1f2e11")


def gid(name: str) -> str:
    """A stable Gooee-style UUID per readable name, so tests can say which entity they mean."""
    return str(uuid.uuid5(_NAMESPACE, name))


HQ, WAREHOUSE = gid("hq"), gid("warehouse")
HQ_FLOORS = ["Ground floor", "Floor 1", "Floor 2", "Floor 3", "Roof", "Car park"]


def inventory_data() -> dict[str, Any]:
    """Two buildings as a Gooee Cloud export would describe them, extra fields included."""
    hq_devices = [
        {
            "id": gid(f"hq/device/{n}"),
            "name": f"{floor} downlight {n}",
            "space": gid(f"hq/{floor}"),
            "type": "wim",  # not part of the format: exports carry it, the import ignores it
        }
        for n, floor in enumerate(HQ_FLOORS[i % 5] for i in range(38))
    ]
    hq_devices += [
        {"id": gid("hq/gateway-1"), "name": "Gateway 1", "space": None},
        {"id": gid("hq/gateway-2"), "name": "Gateway 2"},
    ]
    return {
        "exported_at": "2024-05-02T09:30:00Z",
        "buildings": [
            {
                "id": HQ,
                "name": "Headquarters",
                "customer": {"id": gid("customer"), "name": "Acme"},
                "spaces": [
                    {"id": gid(f"hq/{floor}"), "name": floor, "capacity": 120 if n < 4 else None}
                    for n, floor in enumerate(HQ_FLOORS)
                ],
                "areas": [
                    {
                        "id": gid("hq/lobby"),
                        "name": "Lobby",
                        "space": gid("hq/Ground floor"),
                        "capacity": 40,
                    },
                    {
                        "id": gid("hq/open-office"),
                        "name": "Open office",
                        "space": gid("hq/Floor 1"),
                    },
                    {"id": gid("hq/loading-bay"), "name": "Loading bay", "space": None},
                ],
                "devices": hq_devices,
            },
            {
                "id": WAREHOUSE,
                "name": "Warehouse",
                "spaces": [{"id": gid("wh/hall"), "name": "Hall", "capacity": 15}],
                "areas": [{"id": gid("wh/dock"), "name": "Dock", "space": gid("wh/hall")}],
                "devices": [
                    {"id": gid("wh/sensor-1"), "name": "Hall sensor 1", "space": gid("wh/hall")},
                    {"id": gid("wh/sensor-2"), "name": "Hall sensor 2", "space": None},
                ],
            },
        ],
    }


def write(tmp_path: Path, data: dict[str, Any] | str, name: str = "inventory.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return path


def import_file(path: Path | str, *args: str) -> str:
    """Run the command as an operator would; its stdout."""
    out, err = io.StringIO(), io.StringIO()
    call_command("import_inventory", str(path), *args, stdout=out, stderr=err)
    assert err.getvalue() == ""
    return out.getvalue()


def failing_import(path: Path | str, *args: str) -> tuple[list[str], str, CommandError]:
    """Run the command expecting refusal; (stderr lines, stdout, the error)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("import_inventory", str(path), *args, stdout=out, stderr=err)
    return err.getvalue().splitlines(), out.getvalue(), raised.value


def snapshot() -> dict[str, list[tuple[Any, ...]]]:
    """Every inventory row, versions included, to show the database was not touched."""
    return {
        "buildings": list(
            Building.objects.order_by("id").values_list("id", "name", "inventory_version")
        ),
        "spaces": list(
            Space.objects.order_by("id").values_list("id", "building", "name", "capacity")
        ),
        "areas": list(
            Area.objects.order_by("id").values_list("id", "building", "space", "name", "capacity")
        ),
        "devices": list(
            Device.objects.order_by("id").values_list("id", "building", "space", "name")
        ),
    }


def versions() -> dict[str, int]:
    return {str(b.id): b.inventory_version for b in Building.objects.all()}


@pytest.fixture
def imported(tmp_path: Path) -> dict[str, Any]:
    """Both buildings already imported; the data, to edit and import again."""
    import_file(write(tmp_path, inventory_data(), "first.json"))
    return inventory_data()


# --- Importing -------------------------------------------------------------------------


def test_first_import_creates_every_building_space_area_and_device(tmp_path: Path) -> None:
    output = import_file(write(tmp_path, inventory_data()))

    assert output == "created: 2 buildings, 7 spaces, 4 areas, 42 devices\n"
    hq = Building.objects.get(id=HQ)
    assert hq.name == "Headquarters"
    assert hq.spaces.count() == 6 and hq.areas.count() == 3 and hq.devices.count() == 40
    assert Space.objects.get(id=gid("hq/Floor 1")).capacity == 120
    assert Space.objects.get(id=gid("hq/Roof")).capacity is None
    lobby = Area.objects.get(id=gid("hq/lobby"))
    assert (lobby.building_id, lobby.space.name, lobby.capacity) == (hq.id, "Ground floor", 40)
    assert Area.objects.get(id=gid("hq/loading-bay")).space is None
    downlight = Device.objects.get(id=gid("hq/device/6"))
    assert (downlight.name, downlight.space.name) == ("Floor 1 downlight 6", "Floor 1")
    assert Device.objects.get(id=gid("hq/gateway-2")).space is None
    assert Space.objects.get(id=gid("hq/Roof")).devices.count() == 7
    warehouse = Building.objects.get(id=WAREHOUSE)
    assert list(warehouse.devices.values_list("name", flat=True)) == [
        "Hall sensor 1",
        "Hall sensor 2",
    ]
    # The bridge notices new buildings' inventory through the version.
    assert hq.inventory_version > 0 and warehouse.inventory_version > 0


def test_importing_the_same_file_again_changes_nothing(
    tmp_path: Path, imported: dict[str, Any]
) -> None:
    before = snapshot()

    assert import_file(write(tmp_path, imported)) == "nothing changed\n"
    report = apply_inventory(parse_inventory(json.dumps(imported)))

    assert not report.changed
    assert all(not ids for ids in [*report.created.values(), *report.updated.values()])
    assert snapshot() == before  # versions included: the bridge has nothing to reload


def test_renamed_device_and_new_capacity_are_updates_that_bump_the_version(
    tmp_path: Path, imported: dict[str, Any]
) -> None:
    before = versions()
    hq = imported["buildings"][0]
    hq["devices"][6]["name"] = "Reception downlight"
    hq["spaces"][1]["capacity"] = 80

    assert import_file(write(tmp_path, imported)) == "updated: 1 space, 1 device\n"

    assert Device.objects.get(id=gid("hq/device/6")).name == "Reception downlight"
    assert Space.objects.get(id=gid("hq/Floor 1")).capacity == 80
    assert versions()[HQ] > before[HQ]
    assert versions()[WAREHOUSE] == before[WAREHOUSE]


def test_renaming_a_building_bumps_its_version(tmp_path: Path, imported: dict[str, Any]) -> None:
    before = versions()
    imported["buildings"][1]["name"] = "North warehouse"

    assert import_file(write(tmp_path, imported)) == "updated: 1 building\n"
    assert Building.objects.get(id=WAREHOUSE).name == "North warehouse"
    assert versions()[WAREHOUSE] > before[WAREHOUSE] and versions()[HQ] == before[HQ]


def test_without_prune_what_the_file_dropped_stays(
    tmp_path: Path, imported: dict[str, Any]
) -> None:
    del imported["buildings"][0]["devices"][0:2]

    assert import_file(write(tmp_path, imported)) == "nothing changed\n"
    assert Device.objects.filter(id=gid("hq/device/0")).exists()


def test_prune_removes_what_the_file_dropped_only_in_the_files_buildings(
    tmp_path: Path, imported: dict[str, Any]
) -> None:
    warehouse_before = snapshot()
    warehouse_rows = {
        kind: [r for r in rows if WAREHOUSE in map(str, r)]
        for kind, rows in warehouse_before.items()
    }
    hq = imported["buildings"][0]
    # The roof goes, with its devices; one area and the two gateways too.
    hq["spaces"] = [s for s in hq["spaces"] if s["name"] != "Roof"]
    hq["devices"] = [d for d in hq["devices"] if d.get("space") != gid("hq/Roof")][:-2]
    hq["areas"] = hq["areas"][:2]
    imported["buildings"] = [hq]  # the warehouse is not in this file at all

    output = import_file(write(tmp_path, imported), "--prune")

    assert output == "removed: 1 space, 1 area, 9 devices\n"
    assert not Space.objects.filter(id=gid("hq/Roof")).exists()
    assert not Area.objects.filter(id=gid("hq/loading-bay")).exists()
    assert not Device.objects.filter(id__in=[gid("hq/gateway-1"), gid("hq/device/4")]).exists()
    assert Building.objects.get(id=HQ).devices.count() == 31
    after = snapshot()
    assert {
        kind: [r for r in rows if WAREHOUSE in map(str, r)] for kind, rows in after.items()
    } == warehouse_rows
    assert import_file(write(tmp_path, imported), "--prune") == "nothing changed\n"


def test_device_moved_to_another_building_is_an_update(
    tmp_path: Path, imported: dict[str, Any]
) -> None:
    before = versions()
    hq, warehouse = imported["buildings"]
    device = hq["devices"].pop(0)
    warehouse["devices"].append({**device, "space": gid("wh/hall")})

    assert import_file(write(tmp_path, imported), "--prune") == "updated: 1 device\n"

    moved = Device.objects.get(id=device["id"])
    assert (str(moved.building_id), moved.space.name) == (WAREHOUSE, "Hall")
    assert versions()[HQ] > before[HQ] and versions()[WAREHOUSE] > before[WAREHOUSE]


def test_space_moved_away_leaves_no_device_pointing_across_buildings(
    tmp_path: Path, imported: dict[str, Any]
) -> None:
    roof = next(s for s in imported["buildings"][0]["spaces"] if s["name"] == "Roof")
    only_warehouse = {"buildings": [imported["buildings"][1]]}
    only_warehouse["buildings"][0]["spaces"].append(roof)

    assert import_file(write(tmp_path, only_warehouse)) == "updated: 1 space, 7 devices\n"

    assert str(Space.objects.get(id=roof["id"]).building_id) == WAREHOUSE
    assert Device.objects.filter(space_id=roof["id"]).count() == 0
    assert Device.objects.filter(building_id=HQ).count() == 40


def test_id_already_used_by_another_kind_is_refused(
    tmp_path: Path, imported: dict[str, Any]
) -> None:
    before = snapshot()
    hq = imported["buildings"][0]
    hq["devices"][6]["name"] = "Reception downlight"  # a good edit, not to be applied alone
    gateway = hq["devices"].pop()
    hq["spaces"].append({"id": gateway["id"], "name": "Plant room"})

    stderr, stdout, error = failing_import(write(tmp_path, imported))

    assert stderr == [
        f"buildings[0].spaces[6].id: {gateway['id']} is already a device in the database, not a space"
    ]
    assert stdout == "" and error.returncode == 1
    assert snapshot() == before


# --- Refusing bad files ----------------------------------------------------------------

BROKEN_JSON = '{\n  "buildings": [\n    {"id": "x" "name": "HQ"}\n  ]\n}'


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit putting ``value`` at ``path`` (dotted, with [n] indexes); absent deletes."""

    def edit(data: dict[str, Any]) -> None:
        keys = [
            int(k) if k.isdigit() else k for k in path.replace("[", ".").replace("]", "").split(".")
        ]
        target = data
        for key in keys[:-1]:
            target = target[key]
        if value is _ABSENT:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value

    return edit


def _append(path: str, item: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        target = data
        for key in [
            int(k) if k.isdigit() else k for k in path.replace("[", ".").replace("]", "").split(".")
        ]:
            target = target[key]
        target.append(item)

    return edit


_ABSENT = object()
_STRAY = gid("nowhere")

BAD_FILES = [
    pytest.param(
        lambda data: None, "$: not JSON (line 3, column 16: Expecting ',' delimiter)", id="not-json"
    ),
    pytest.param(
        _set("buildings[1].id", "abc"),
        "buildings[1].id: not a UUID: 'abc'",
        id="building-id-not-uuid",
    ),
    pytest.param(
        _set("buildings[0].devices[3].id", 17),
        "buildings[0].devices[3].id: expected a UUID string, got number",
        id="device-id-a-number",
    ),
    pytest.param(
        _set("buildings[0].areas[1].id", _ABSENT),
        "buildings[0].areas[1].id: missing",
        id="missing-id",
    ),
    pytest.param(
        _set("buildings[0].devices[3].space", _STRAY),
        f"buildings[0].devices[3].space: unknown space {_STRAY}",
        id="unknown-space",
    ),
    pytest.param(
        _set("buildings[0].devices[3].space", gid("wh/hall")),
        f"buildings[0].devices[3].space: space {gid('wh/hall')} belongs to another building"
        " (buildings[1].spaces[0])",
        id="space-of-another-building",
    ),
    pytest.param(
        _set("buildings[0].areas[2].space", gid("hq/device/0")),
        f"buildings[0].areas[2].space: {gid('hq/device/0')} is not a space"
        " (it is buildings[0].devices[0].id)",
        id="space-reference-to-a-device",
    ),
    pytest.param(
        _set("buildings[0].areas[0].space", "lobby"),
        "buildings[0].areas[0].space: not a UUID: 'lobby'",
        id="space-reference-not-uuid",
    ),
    pytest.param(
        _append("buildings[0].spaces", {"id": gid("hq/Ground floor"), "name": "Mezzanine"}),
        f"buildings[0].spaces[6].id: duplicate id {gid('hq/Ground floor')}"
        " (also at buildings[0].spaces[0].id)",
        id="duplicate-space-id",
    ),
    pytest.param(
        _append("buildings[0].devices", {"id": gid("hq/lobby"), "name": "Lobby sensor"}),
        f"buildings[0].devices[40].id: duplicate id {gid('hq/lobby')}"
        " (also at buildings[0].areas[0].id)",
        id="device-id-equals-area-id",
    ),
    pytest.param(
        _append("buildings[1].devices", {"id": gid("hq/device/0"), "name": "Copied"}),
        f"buildings[1].devices[2].id: duplicate id {gid('hq/device/0')}"
        " (also at buildings[0].devices[0].id)",
        id="device-id-repeated-in-another-building",
    ),
    pytest.param(
        _append("buildings[1].spaces", {"id": HQ, "name": "Annex"}),
        f"buildings[1].spaces[1].id: duplicate id {HQ} (also at buildings[0].id)",
        id="space-id-equals-building-id",
    ),
    pytest.param(
        _set("buildings[0].spaces[1].capacity", -1),
        "buildings[0].spaces[1].capacity: must be a whole number >= 0",
        id="negative-capacity",
    ),
    pytest.param(
        _set("buildings[0].areas[0].capacity", "40"),
        "buildings[0].areas[0].capacity: must be a whole number >= 0",
        id="capacity-a-string",
    ),
    pytest.param(
        _set("buildings[0].spaces[1].capacity", 12.5),
        "buildings[0].spaces[1].capacity: must be a whole number >= 0",
        id="capacity-a-fraction",
    ),
    pytest.param(
        _set("buildings[0].spaces[1].capacity", True),
        "buildings[0].spaces[1].capacity: must be a whole number >= 0",
        id="capacity-a-boolean",
    ),
    pytest.param(
        _set("buildings[0].devices[3].name", _ABSENT),
        "buildings[0].devices[3].name: missing",
        id="missing-device-name",
    ),
    pytest.param(
        _set("buildings[1].name", _ABSENT), "buildings[1].name: missing", id="missing-building-name"
    ),
    pytest.param(
        _set("buildings[0].spaces[2].name", 42),
        "buildings[0].spaces[2].name: expected a string, got number",
        id="name-a-number",
    ),
    pytest.param(
        _set("buildings[0].areas[1].name", "   "),
        "buildings[0].areas[1].name: must not be blank",
        id="blank-name",
    ),
    pytest.param(
        _set("buildings[0].spaces[1].name", "x" * 201),
        "buildings[0].spaces[1].name: longer than 200 characters (201)",
        id="name-too-long",
    ),
    pytest.param(
        _set("buildings[0].devices", {"id": gid("hq/device/0")}),
        "buildings[0].devices: expected an array, got object",
        id="devices-not-a-list",
    ),
    pytest.param(
        _set("buildings[0].spaces[5]", "Car park"),
        "buildings[0].spaces[5]: expected an object, got string",
        id="space-not-an-object",
    ),
    pytest.param(
        _set("buildings", {}), "buildings: expected an array, got object", id="buildings-not-a-list"
    ),
    pytest.param(_set("buildings", _ABSENT), "buildings: missing", id="no-buildings-key"),
]


@pytest.mark.parametrize(("break_file", "message"), BAD_FILES)
def test_bad_file_is_refused_naming_the_path_and_nothing_is_written(
    tmp_path: Path,
    imported: dict[str, Any],
    break_file: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    before = snapshot()
    imported["buildings"][0]["devices"][0]["name"] = "Renamed downlight"  # the one good edit
    break_file(imported)
    text = BROKEN_JSON if message.startswith("$: not JSON") else json.dumps(imported, indent=2)

    stderr, stdout, error = failing_import(write(tmp_path, text))

    assert stderr == [message]
    assert str(error) == "inventory not imported (1 error); nothing was changed"
    assert error.returncode == 1 and stdout == ""
    assert snapshot() == before
    assert Device.objects.get(id=gid("hq/device/0")).name == "Ground floor downlight 0"


def test_every_problem_is_reported_in_one_go(tmp_path: Path) -> None:
    data = inventory_data()
    data["buildings"][0]["spaces"][0]["capacity"] = -5
    data["buildings"][0]["devices"][9]["space"] = _STRAY
    data["buildings"][1]["id"] = "warehouse-1"

    stderr, _, error = failing_import(write(tmp_path, data))

    assert stderr == [
        "buildings[0].spaces[0].capacity: must be a whole number >= 0",
        "buildings[1].id: not a UUID: 'warehouse-1'",
        f"buildings[0].devices[9].space: unknown space {_STRAY}",
    ]
    assert "3 errors" in str(error)
    assert Building.objects.count() == Device.objects.count() == 0


def test_a_whole_json_value_other_than_an_object_is_refused() -> None:
    with pytest.raises(InventoryError) as raised:
        parse_inventory("[]")
    assert raised.value.messages == ["$: expected an object with a buildings array, got array"]


def test_empty_lists_and_null_capacity_are_fine() -> None:
    inventory = parse_inventory(
        json.dumps({"buildings": [{"id": HQ, "name": "HQ", "spaces": None}]})
    )
    assert inventory.buildings[0].spaces == ()
    assert str(apply_inventory(inventory)) == "created: 1 building"


# --- The command's input and output ----------------------------------------------------


def test_dash_reads_the_inventory_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    payload = json.dumps(inventory_data()).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(payload)))

    assert import_file("-") == "created: 2 buildings, 7 spaces, 4 areas, 42 devices\n"


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    _, _, error = failing_import(tmp_path / "nope.json")
    assert str(error) == f"cannot read {tmp_path / 'nope.json'}: No such file or directory"


def test_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('{"buildings": [{"name": "Caf\u00e9"}]}'.encode("latin-1"))
    _, _, error = failing_import(path)
    assert str(error) == f"{path}: not UTF-8 text (byte offset 28)"


# --- Granting roles --------------------------------------------------------------------


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice", password="unused-password-1")


@pytest.fixture
def hq() -> Building:
    return Building.objects.create(id=HQ, name="Headquarters")


def grant(*args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("grant", *args, stdout=out, stderr=err)
    assert err.getvalue() == ""
    return out.getvalue()


def test_granting_operator_lets_alice_view_and_act_on_that_building_only(
    alice: User, hq: Building
) -> None:
    other = Building.objects.create(id=WAREHOUSE, name="Warehouse")
    assert roles_on(alice, HQ) == set()

    assert grant("alice", HQ, "operator") == f"granted operator on Headquarters ({HQ}) to alice\n"

    assert roles_on(alice, HQ) == {Role.OPERATOR, Role.VIEWER}
    assert roles_on(alice, other.id) == set()


def test_granting_twice_changes_nothing(alice: User, hq: Building) -> None:
    grant("alice", HQ, "viewer")

    assert (
        grant("alice", HQ, "viewer")
        == f"alice already is viewer on Headquarters ({HQ}); nothing changed\n"
    )
    assert Role.objects.filter(user=alice).count() == 1


def test_revoking_takes_the_role_away(alice: User, hq: Building) -> None:
    grant("alice", HQ, "support")

    assert (
        grant("alice", HQ, "support", "--revoke")
        == f"revoked support on Headquarters ({HQ}) from alice\n"
    )
    assert roles_on(alice, HQ) == set()
    assert grant("alice", HQ, "support", "--revoke") == (
        f"alice is not support on Headquarters ({HQ}); nothing changed\n"
    )


def test_revoking_viewer_from_an_operator_says_she_still_views(alice: User, hq: Building) -> None:
    grant("alice", HQ, "operator")
    grant("alice", HQ, "viewer")

    output = grant("alice", HQ, "viewer", "--revoke")

    assert output.splitlines()[-1] == "note: alice still has viewer on it (through another role)"
    assert Role.VIEWER in roles_on(alice, HQ)


def test_a_superuser_holds_every_role_without_grants(hq: Building) -> None:
    root = User.objects.create_superuser("root", password="unused-password-1")
    assert roles_on(root, HQ) == {Role.VIEWER, Role.OPERATOR, Role.SUPPORT}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bob", HQ, "viewer"], "no user named 'bob'"),
        (["alice", WAREHOUSE, "viewer"], f"no building with id {WAREHOUSE}"),
        (["alice", "hq-1", "viewer"], "BUILDING_ID: not a UUID: 'hq-1'"),
        (["alice", HQ, "admin"], "unknown role 'admin'; valid roles: viewer, operator, support"),
        (
            ["alice", HQ, "admin", "--revoke"],
            "unknown role 'admin'; valid roles: viewer, operator, support",
        ),
    ],
)
def test_grant_refuses_bad_arguments_clearly(
    alice: User, hq: Building, args: list[str], message: str
) -> None:
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing changed"):
        call_command("grant", *args, stdout=io.StringIO(), stderr=err)
    assert err.getvalue().splitlines() == [message]
    assert not Role.objects.exists()


def test_a_failure_midway_leaves_nothing_half_imported(
    tmp_path: Path, imported: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot()
    imported["buildings"][0]["devices"][6]["name"] = "Reception downlight"
    imported["buildings"][0]["devices"].pop()

    def database_gone(*args: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr("dashboard.live.inventory._prune", database_gone)
    with pytest.raises(RuntimeError):
        apply_inventory(parse_inventory(json.dumps(imported)), prune=True)

    assert snapshot() == before


def test_a_zone_the_cloud_changes_puts_the_occupancy_days_on_the_new_clock(
    tmp_path: Path, imported: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    from datetime import UTC, date, datetime

    from dashboard.models import OccupancyDay, OccupancyHour

    # 03:00 UTC on 11 March: Wednesday in London, still Tuesday in New York.
    OccupancyHour.objects.create(
        building_id=HQ,
        scope="building",
        entity_id=HQ,
        bucket=datetime(2026, 3, 11, 3, tzinfo=UTC),
        count_max=12,
        count_sum=12,
        count_n=1,
    )
    days = OccupancyDay.objects.filter(entity_id=HQ)
    assert list(days.values_list("day", flat=True)) == [date(2026, 3, 11)]
    imported["buildings"][0]["timezone"] = "America/New_York"

    with django_capture_on_commit_callbacks(execute=True):
        import_file(write(tmp_path, imported))

    assert list(days.values_list("day", "peak")) == [(date(2026, 3, 10), 12)]
