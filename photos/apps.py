from django.apps import AppConfig
from django.db.models.signals import post_delete


def _event_deleted(sender, instance, **kwargs) -> None:  # noqa: ARG001
    from . import services

    services.event_deleted(event_id=instance.pk)


class PhotosConfig(AppConfig):
    name = "photos"
    verbose_name = "Events and photos"

    def ready(self) -> None:
        # However an event is deleted (admin, shell), its photo files go too, in the background.
        post_delete.connect(
            _event_deleted, sender="photos.Event", dispatch_uid="photos-event-files"
        )
