from django.apps import AppConfig
from django.db.models.signals import post_delete


def _event_deleted(sender, instance, **kwargs) -> None:  # noqa: ARG001
    from . import services

    services.event_deleted(event_id=instance.pk)


class FacesConfig(AppConfig):
    name = "faces"
    verbose_name = "Faces and matches"

    def ready(self) -> None:
        # Deleting an event, from anywhere (admin, shell, a cascade), deletes what the face engine
        # holds for it: a Rekognition collection. A lazy sender keeps faces from importing photos.
        post_delete.connect(
            _event_deleted, sender="photos.Event", dispatch_uid="faces-event-forget"
        )
