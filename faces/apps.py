from django.apps import AppConfig
from django.db.models.signals import post_delete, pre_delete


def _event_deleting(sender, instance, **kwargs) -> None:  # noqa: ARG001
    from . import services

    services.event_viewers_refresh(event_id=instance.pk)


def _event_deleted(sender, instance, **kwargs) -> None:  # noqa: ARG001
    from . import services

    services.event_deleted(event_id=instance.pk)


class FacesConfig(AppConfig):
    name = "faces"
    verbose_name = "Faces and matches"

    def ready(self) -> None:
        # Deleting an event, from anywhere (admin, shell, a cascade), empties its members'
        # galleries at once (before: the matches still say who they are) and deletes what the
        # face engine holds for it: a Rekognition collection (after). A lazy sender keeps faces
        # from importing photos.
        pre_delete.connect(
            _event_deleting, sender="photos.Event", dispatch_uid="faces-event-galleries"
        )
        post_delete.connect(
            _event_deleted, sender="photos.Event", dispatch_uid="faces-event-forget"
        )
