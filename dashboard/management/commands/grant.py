"""``manage.py grant USERNAME BUILDING_ID ROLE [--revoke]``: give or take a role on a building."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard.access import roles_on
from dashboard.models import Building, Role

ROLES = [value for value, _ in Role.CHOICES]


class Command(BaseCommand):
    help = f"Grant a user a role on a building ({', '.join(ROLES)}), or take it away with --revoke."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", metavar="USERNAME")
        parser.add_argument("building_id", metavar="BUILDING_ID", help="the building's Gooee UUID")
        # Checked in handle() rather than with argparse choices, for one consistent message.
        parser.add_argument("role", metavar="ROLE", help=" | ".join(ROLES))
        parser.add_argument("--revoke", action="store_true", help="take the role away instead")

    def handle(
        self, *args: Any, username: str, building_id: str, role: str, revoke: bool, **options: Any
    ) -> None:
        user, building = self.resolve(username, building_id, role)
        if revoke:
            deleted, _ = Role.objects.filter(user=user, building=building, role=role).delete()
            if deleted:
                self.stdout.write(f"revoked {role} on {building} ({building.pk}) from {username}")
            else:
                self.stdout.write(
                    f"{username} is not {role} on {building} ({building.pk}); nothing changed"
                )
            remaining = roles_on(user, building.pk)
            if role in remaining:
                # Revoking viewer leaves an operator a viewer; say so rather than surprise.
                why = "a superuser" if user.is_superuser else "through another role"
                self.stdout.write(f"note: {username} still has {role} on it ({why})")
            return
        _, created = Role.objects.get_or_create(user=user, building=building, role=role)
        if created:
            self.stdout.write(f"granted {role} on {building} ({building.pk}) to {username}")
        else:
            self.stdout.write(
                f"{username} already is {role} on {building} ({building.pk}); nothing changed"
            )
        if user.is_superuser:
            self.stdout.write(f"note: {username} is a superuser and holds every role anyway")
        if not user.is_active:
            self.stdout.write(f"note: {username} is inactive; roles apply once reactivated")

    def resolve(self, username: str, building_id: str, role: str) -> tuple[Any, Building]:
        """The user and building, or CommandError naming every problem with the arguments."""
        errors = []
        if role not in ROLES:
            errors.append(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
        User = get_user_model()
        user = User._default_manager.filter(**{User.USERNAME_FIELD: username}).first()
        if user is None:
            errors.append(f"no user named {username!r}")
        building = None
        try:
            building_uuid = uuid.UUID(building_id)
        except ValueError:
            errors.append(f"BUILDING_ID: not a UUID: {building_id!r}")
        else:
            building = Building.objects.filter(pk=building_uuid).first()
            if building is None:
                errors.append(f"no building with id {building_uuid}")
        if errors:
            for message in errors:
                self.stderr.write(message)
            raise CommandError("nothing changed")
        assert user is not None and building is not None  # for the type checker
        return user, building
