from django import forms
from django.contrib import admin, messages
from django.core.files.base import ContentFile
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from core.imaging import ImageRejected
from events.models import Event, Membership

from . import services
from .models import Photo


class EventForm(forms.ModelForm):
    """The cover and logo are stored as FindMe makes them (bounded, without metadata), never as
    uploaded; a file that is no image is refused here."""

    class Meta:
        model = Event
        fields = (
            "name",
            "slug",
            "join_code",
            "date",
            "organiser",
            "cover",
            "logo",
            "keep_location",
        )

    def _branding(self, kind: str):
        upload = self.cleaned_data.get(kind)
        if not upload or upload == getattr(self.instance, kind):
            return upload  # unchanged, or cleared
        try:
            name, data = services.event_branding_image(kind=kind, upload=upload)
        except ImageRejected as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from None
        return ContentFile(data, name=name)

    def clean_cover(self):
        return self._branding("cover")

    def clean_logo(self):
        return self._branding("logo")


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    form = EventForm
    list_display = ("name", "slug", "date", "join_code", "keep_location", "created_at", "qr_link")
    list_filter = ("keep_location",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("qr_link",)
    fieldsets = (
        (None, {"fields": ("name", "slug", "join_code", "qr_link")}),
        ("Landing page and poster", {"fields": ("date", "organiser", "cover", "logo")}),
        ("Privacy", {"fields": ("keep_location",)}),
    )

    # Every deletion goes through the service: galleries, files and engine vectors go too.
    def delete_model(self, request: HttpRequest, obj: Event) -> None:
        services.events_delete(event_ids=[obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> None:
        services.events_delete(event_ids=list(queryset.values_list("pk", flat=True)))

    @admin.display(description="Join QR code")
    def qr_link(self, obj: Event) -> str:
        if not obj.pk:
            return "-"
        url = reverse("event-qr", args=[obj.slug])
        return format_html('<a href="{}">Show the QR code and the poster</a>', url)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "event", "joined_at")
    raw_id_fields = ("user", "event")


@admin.register(Photo)
class PhotoAdmin(admin.ModelAdmin):
    list_display = ("id", "event", "status", "face_count", "attempts", "created_at", "processed_at")
    list_filter = ("status", "event")
    search_fields = ("sha256", "original_name")
    readonly_fields = (
        "sha256",
        "original",
        "original_name",
        "content_type",
        "size",
        "width",
        "height",
        "taken_at",
        "status",
        "attempts",
        "error",
        "face_count",
        "created_at",
        "processed_at",
    )
    raw_id_fields = ("event", "uploaded_by")
    actions = ["reprocess"]

    def delete_model(self, request: HttpRequest, obj: Photo) -> None:
        services.photos_delete(photo_ids=[obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Photo]) -> None:
        services.photos_delete(photo_ids=list(queryset.values_list("pk", flat=True)))

    @admin.action(description="Scan the selected photos again")
    def reprocess(self, request: HttpRequest, queryset: QuerySet[Photo]) -> None:
        count = sum(
            services.photo_reprocess(photo_id=pk) for pk in queryset.values_list("pk", flat=True)
        )
        self.message_user(request, f"{count} photos queued again.", messages.SUCCESS)
