"""Output shapes shared by the photo endpoints and the pages (see ../shared/API.md)."""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from events.models import Event

from .models import Photo


def _absolute(request, path: str) -> str:
    return request.build_absolute_uri(path) if request is not None else path


class EventOutputSerializer(serializers.ModelSerializer):
    join_url = serializers.SerializerMethodField()

    class Meta:
        model = Event
        fields = ["slug", "name", "join_code", "join_url", "created_at"]

    def get_join_url(self, event: Event) -> str:
        return _absolute(self.context.get("request"), event.join_path)


class PhotoOutputSerializer(serializers.ModelSerializer):
    event = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    faces = serializers.IntegerField(source="face_count", read_only=True, allow_null=True)
    thumb_url = serializers.SerializerMethodField()
    preview_url = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Photo
        fields = [
            "id",
            "event",
            "sha256",
            "status",
            "width",
            "height",
            "taken_at",
            "faces",
            "created_at",
            "thumb_url",
            "preview_url",
            "download_url",
        ]

    def _url(self, name: str, photo: Photo) -> str:
        return _absolute(self.context.get("request"), reverse(name, kwargs={"photo_id": photo.pk}))

    def get_thumb_url(self, photo: Photo) -> str:
        return self._url("photo-thumb", photo)

    def get_preview_url(self, photo: Photo) -> str:
        return self._url("photo-preview", photo)

    def get_download_url(self, photo: Photo) -> str:
        return self._url("photo-original", photo)
