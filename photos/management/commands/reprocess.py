"""Queue an event's photos for another scan: `manage.py reprocess --event SLUG [--status failed]`."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from events.models import Event
from photos import services
from photos.models import Photo


class Command(BaseCommand):
    help = "Scan an event's photos again (all finished ones, or only those of one status)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--event", required=True, help="the event's slug")
        parser.add_argument(
            "--status",
            choices=[Photo.Status.DONE, Photo.Status.FAILED],
            help="only photos in this state (default: done and failed)",
        )

    def handle(self, *args, event: str, status: str | None, **options) -> None:
        found = Event.objects.filter(slug=event).first()
        if found is None:
            raise CommandError(f"No event has the slug {event!r}.")
        photos = Photo.objects.filter(event=found)
        if status:
            photos = photos.filter(status=status)
        ids = list(photos.values_list("pk", flat=True))
        # Queued and processing photos are left alone: photo_reprocess skips them.
        queued = sum(services.photo_reprocess(photo_id=pk) for pk in ids)
        self.stdout.write(f"{queued} photos of {found.slug} queued again.")
