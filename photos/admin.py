from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from events.models import Event, Membership

from . import services
from .models import Photo


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "join_code", "keep_location", "created_at", "qr_link")
    list_filter = ("keep_location",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("qr_link",)

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
        return format_html('<a href="{}">Show the QR code</a>', url)


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
