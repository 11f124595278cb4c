"""An API token for the watcher: `manage.py create_upload_token --user U`."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.services import user_token


class Command(BaseCommand):
    help = (
        "Print a staff user's API token, for the watcher (FINDME_TOKEN or --token-file). "
        "An expired token is replaced."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--user", required=True, help="the staff user's username")

    def handle(self, *args, user: str, **options) -> None:
        found = get_user_model().objects.filter(username=user).first()
        if found is None:
            raise CommandError(f"No user is called {user!r}.")
        if not (found.is_staff and found.is_active):
            raise CommandError(f"{user} is not active staff: only staff may upload photos.")
        self.stdout.write(user_token(user=found))
