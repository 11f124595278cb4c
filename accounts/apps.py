from django.apps import AppConfig
from django.db import transaction
from django.db.models.signals import post_delete


def _selfie_deleted(sender, instance, **kwargs) -> None:  # noqa: ARG001
    # A selfie is biometric data: its file goes with its row, however the row goes (face data
    # deleted, the user deleted in the admin, a cascade), once the deletion is committed.
    name, storage = instance.image.name, instance.image.storage
    if name:
        transaction.on_commit(lambda: storage.delete(name))


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and selfies"

    def ready(self) -> None:
        post_delete.connect(
            _selfie_deleted, sender="accounts.Selfie", dispatch_uid="accounts-selfie-file"
        )
