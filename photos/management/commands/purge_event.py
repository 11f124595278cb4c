"""Delete an event with everything of it: `manage.py purge_event SLUG [--yes]` (asks first)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from events.models import Event, Membership
from photos import services
from photos.models import Photo


class Command(BaseCommand):
    help = (
        "Delete an event, its photos and files, its members' matches and the face engine's "
        "vectors; guests who belonged to it alone go with their face data."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    def handle(self, *args, slug: str, yes: bool, **options) -> None:
        event = Event.objects.filter(slug=slug).first()
        if event is None:
            raise CommandError(f"No event has the slug {slug!r}.")
        photos = Photo.objects.filter(event=event).count()
        members = Membership.objects.filter(event=event).count()
        summary = f"{event.name} ({slug}): {photos} photos, {members} members"
        if not yes:
            answer = input(f"Delete {summary}, for good? Type the slug to confirm: ")
            if answer.strip() != slug:
                raise CommandError("Not deleted: the slug was not typed.")
        services.events_delete(event_ids=[event.pk])
        self.stdout.write(f"Deleted {summary}. Its files and vectors go in the background.")
