"""Create the demo staff user and demo event if they are absent, and print how to log in."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from events.models import Event


class Command(BaseCommand):
    help = "Create a demo staff user and a demo event (only if absent) and print the details."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="findme-demo")
        parser.add_argument("--url", default="http://127.0.0.1:8000")

    def handle(self, *args, **options) -> None:
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username=options["username"],
            defaults={"is_staff": True, "is_superuser": True, "email": "demo@findme.local"},
        )
        if created:
            user.set_password(options["password"])
            user.save()
        token, _ = Token.objects.get_or_create(user=user)
        event, _ = Event.objects.get_or_create(
            slug="demo", defaults={"name": "Demo event", "created_by": user}
        )
        url = options["url"].rstrip("/")
        password = options["password"] if created else "(unchanged since it was created)"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "FindMe is running.",
                    f"  Open:        {url}/",
                    f"  Admin:       {url}/admin/   (user {user.username}, password {password})",
                    f"  Join link:   {url}{event.join_path}",
                    f"  Staff token: {token.key}",
                    f"  Watcher:     .venv/bin/python -m watcher ./photos --server {url} "
                    f"--event {event.slug} --token {token.key}",
                    "  Stop with Ctrl-C.",
                    "",
                ]
            )
        )
