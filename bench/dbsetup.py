"""Database set-up run inside ``manage.py shell`` (Django configured): buildings and sessions.

Sessions are made directly, as the login view would store them: hashing a password per
client (PBKDF2, about 0.3 s here) would make a thousand pages take minutes to log in.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.db import transaction

from dashboard.live.inventory import apply_inventory
from dashboard.live.inventory_file import parse_inventory
from dashboard.models import Role

USERNAME = "bench"
BACKEND = "django.contrib.auth.backends.ModelBackend"


def import_building(inventory_path: str) -> str:
    """Import the file's (one) building; its id."""
    text = Path(inventory_path).read_text(encoding="utf-8")
    apply_inventory(parse_inventory(text), prune=True)
    return json.loads(text)["buildings"][0]["id"]


def make_sessions(building_id: str, count: int) -> list[str]:
    """``count`` logged-in sessions of the viewer ``bench`` on the building."""
    user, created = User.objects.get_or_create(username=USERNAME)
    if created:
        user.set_unusable_password()
        user.save()
    Role.objects.get_or_create(user=user, building_id=building_id, role=Role.VIEWER)
    keys = []
    with transaction.atomic():
        for _ in range(count):
            session = SessionStore()
            session[SESSION_KEY] = str(user.pk)
            session[BACKEND_SESSION_KEY] = BACKEND
            session[HASH_SESSION_KEY] = user.get_session_auth_hash()
            session.create()
            keys.append(session.session_key)
    return keys


def operator_session(building_id: str) -> None:
    """Print one logged-in session of the operator ``bench-operator`` of the building."""
    user, created = User.objects.get_or_create(username=f"{USERNAME}-operator")
    if created:
        user.set_unusable_password()
        user.save()
    Role.objects.get_or_create(user=user, building_id=building_id, role=Role.OPERATOR)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = BACKEND
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    print(json.dumps(session.session_key))


def setup(inventory_path: str, sessions: int) -> None:
    """Print {"building": id, "sessions": [...]} as the last line."""
    building_id = import_building(inventory_path)
    keys = make_sessions(building_id, sessions)
    print(json.dumps({"building": building_id, "sessions": keys}))
