from datetime import datetime

from django import forms
from django.contrib import admin, messages
from django.core.files.base import ContentFile
from django.db.models import Count, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime

from core.imaging import ImageRejected
from events.models import Event, Membership
from faces.admin import matches_label
from faces.models import Face, Match

from . import selectors, services
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


def _count(queryset: QuerySet) -> Subquery:
    """A correlated COUNT(*) of ``queryset`` (already filtered on OuterRef), as an annotation."""
    counted = queryset.order_by().values("event_id").annotate(n=Count("*")).values("n")
    return Coalesce(Subquery(counted), 0)


STATUSES = [status.value for status in Photo.Status]


class FindMeAdminMedia:
    css = {"all": ("admin-findme/admin.css",)}


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    form = EventForm
    Media = FindMeAdminMedia
    list_display = (
        "name",
        "slug",
        "date",
        "progress",
        "members",
        "matched_photos",
        "unmatched_faces",
        "keep_location",
        "qr_link",
    )
    list_filter = ("keep_location",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = (
        "progress",
        "members",
        "matched_photos",
        "unmatched_faces",
        "join_link",
        "qr_link",
        "upload_help",
        "upload_tokens",
    )
    fieldsets = (
        (None, {"fields": ("name", "slug", "join_code", "join_link", "qr_link")}),
        (
            "Progress",
            {"fields": ("progress", "members", "matched_photos", "unmatched_faces")},
        ),
        ("Upload", {"fields": ("upload_help", "upload_tokens")}),
        ("Landing page and poster", {"fields": ("date", "organiser", "cover", "logo")}),
        ("Privacy", {"fields": ("keep_location",)}),
    )
    actions = ["reprocess_failed"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Event]:
        # Every figure of the list in the one query of the page, whatever the number of photos.
        photos = Photo.objects.filter(event=OuterRef("pk"))
        counts = {f"n_{status}": _count(photos.filter(status=status)) for status in STATUSES}
        return (
            super()
            .get_queryset(request)
            .annotate(
                **counts,
                n_members=_count(Membership.objects.filter(event=OuterRef("pk"))),
                n_matched_photos=Coalesce(
                    Subquery(
                        Match.objects.filter(event=OuterRef("pk"), rejected=False)
                        .order_by()
                        .values("event_id")
                        .annotate(n=Count("photo_id", distinct=True))
                        .values("n")
                    ),
                    0,
                ),
                n_unmatched_faces=_count(
                    Face.objects.filter(event=OuterRef("pk")).exclude(matches__rejected=False)
                ),
            )
        )

    # Every deletion goes through the service: galleries, files and engine vectors go too.
    def delete_model(self, request: HttpRequest, obj: Event) -> None:
        services.events_delete(event_ids=[obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> None:
        services.events_delete(event_ids=list(queryset.values_list("pk", flat=True)))

    @admin.display(description="Photos")
    def progress(self, obj: Event) -> str:
        counts = {status: getattr(obj, f"n_{status}", 0) for status in STATUSES}
        total = sum(counts.values())
        if not total:
            return "No photos yet"
        # SVG attributes, not inline styles: the admin's Content-Security-Policy forbids those.
        rects, x = [], 0.0
        for status, n in counts.items():
            if n:
                width = 100 * n / total
                rects.append((status, round(x, 3), round(width, 3)))
                x += width
        bars = format_html_join(
            "",
            '<rect class="findme-bar-{}" x="{}" y="0" width="{}" height="10"></rect>',
            rects,
        )
        legend = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
        return format_html(
            '<svg class="findme-progress" viewBox="0 0 100 10" preserveAspectRatio="none" '
            'role="img" aria-label="{}">{}</svg><span class="findme-progress-legend">{}</span>',
            legend,
            bars,
            legend,
        )

    @admin.display(description="Members", ordering="n_members")
    def members(self, obj: Event) -> int:
        return getattr(obj, "n_members", 0)

    @admin.display(description="Photos with members", ordering="n_matched_photos")
    def matched_photos(self, obj: Event) -> int:
        return getattr(obj, "n_matched_photos", 0)

    @admin.display(description="Faces nobody claims", ordering="n_unmatched_faces")
    def unmatched_faces(self, obj: Event) -> int:
        return getattr(obj, "n_unmatched_faces", 0)

    @admin.display(description="Join link")
    def join_link(self, obj: Event) -> str:
        if not obj.pk:
            return "-"
        return format_html('<a href="{0}">{0}</a>', obj.join_path)

    @admin.display(description="QR code and poster")
    def qr_link(self, obj: Event) -> str:
        if not obj.pk:
            return "-"
        url = reverse("event-qr", args=[obj.slug])
        return format_html('<a href="{}">Show the QR code and the poster</a>', url)

    @admin.display(description="Upload")
    def upload_help(self, obj: Event) -> str:
        if not obj.pk:
            return "Save the event first."
        return format_html(
            "Drop photos in the box below this form. For the photographer's watcher, an upload "
            'token: <a href="{}">add one for a staff user</a> (or '
            "<code>manage.py create_upload_token --user NAME</code>), then "
            "<code>FINDME_TOKEN=… python -m watcher --server URL --event {} FOLDER</code>.",
            reverse("admin:authtoken_tokenproxy_add"),
            obj.slug,
        )

    @admin.display(description="Upload tokens")
    def upload_tokens(self, obj: Event) -> str:
        if not obj.pk:
            return "-"
        tokens = selectors.event_upload_tokens(event=obj)
        if not tokens:
            return "No staff user has a token yet."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td><code>{}…</code></td><td>{}</td><td>{}</td><td>{}</td>"
            '<td><a href="{}">Revoke</a></td></tr>',
            (
                (
                    token.user.get_username(),
                    token.key_start,
                    date_format(localtime(token.created_at), "DATE_FORMAT"),
                    _expiry(token.expires_at),
                    token.photos,
                    reverse("admin:authtoken_tokenproxy_delete", args=[token.user.pk]),
                )
                for token in tokens
            ),
        )
        return format_html(
            '<table class="findme-tokens"><thead><tr><th scope="col">Staff user</th>'
            '<th scope="col">Token</th><th scope="col">Created</th><th scope="col">Expires</th>'
            '<th scope="col">Photos uploaded here</th><th scope="col">'
            '<span class="visually-hidden">Action</span></th></tr></thead>'
            "<tbody>{}</tbody></table>",
            rows,
        )

    @admin.action(description="Scan the failed photos of the selected events again")
    def reprocess_failed(self, request: HttpRequest, queryset: QuerySet[Event]) -> None:
        ids = Photo.objects.filter(
            event__in=queryset.values("pk"), status=Photo.Status.FAILED
        ).values_list("pk", flat=True)
        count = sum(services.photo_reprocess(photo_id=pk) for pk in list(ids))
        self.message_user(request, f"{count} failed photos queued again.", messages.SUCCESS)


def _expiry(expires_at: datetime | None) -> str:
    if expires_at is None:
        return "never"
    if expires_at <= timezone.now():
        return "expired: the next create_upload_token replaces it"
    return date_format(localtime(expires_at), "DATE_FORMAT")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "event", "joined_at")
    raw_id_fields = ("user", "event")


@admin.register(Photo)
class PhotoAdmin(admin.ModelAdmin):
    Media = FindMeAdminMedia
    list_display = (
        "thumbnail",
        "original_name",
        "event",
        "status",
        "face_count",
        "attempts",
        "created_at",
    )
    list_display_links = ("thumbnail", "original_name")
    list_filter = ("status", "event")
    list_select_related = ("event",)
    search_fields = ("original_name",)
    search_help_text = "A file name, or the start of a SHA-256 (4 hex characters or more)."
    readonly_fields = (
        "faces_view",
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
    fields = (
        "faces_view",
        "event",
        "uploaded_by",
        *readonly_fields[1:],
    )
    raw_id_fields = ("event", "uploaded_by")
    actions = ["reprocess"]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        term = search_term.strip().lower()
        if len(term) >= 4 and all(c in "0123456789abcdef" for c in term):
            by_hash = queryset.filter(sha256__startswith=term)
            by_name = queryset.filter(original_name__icontains=term)
            return by_hash | by_name, False
        return super().get_search_results(request, queryset, search_term)

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

    @admin.display(description="Photo")
    def thumbnail(self, obj: Photo) -> str:
        if obj.status != Photo.Status.DONE:
            return format_html('<span class="findme-thumb findme-thumb-none">{}</span>', obj.status)
        # The authorised thumbnail view: staff may see every photo.
        return format_html(
            '<img class="findme-thumb" src="{}" alt="" width="80" height="80" loading="lazy">',
            reverse("photo-thumb", args=[obj.pk]),
        )

    @admin.display(description="Faces")
    def faces_view(self, obj: Photo) -> str:
        if not obj.pk or obj.status != Photo.Status.DONE:
            return "Shown once the photo is processed."
        faces = list(
            Face.objects.filter(photo=obj)
            .prefetch_related(
                Prefetch(
                    "matches",
                    queryset=Match.objects.select_related("user").order_by("distance"),
                )
            )
            .order_by("index")
        )
        width, height = obj.width or 1, obj.height or 1
        boxes = format_html_join(
            "",
            '<rect x="{}" y="{}" width="{}" height="{}"></rect>'
            '<text x="{}" y="{}" font-size="{}">{}</text>',
            (
                (
                    round(f.left * width, 1),
                    round(f.top * height, 1),
                    round(f.width * width, 1),
                    round(f.height * height, 1),
                    round(f.left * width, 1),
                    round(max(f.top * height - width / 100, width / 30), 1),
                    round(width / 30, 1),
                    f.index + 1,
                )
                for f in faces
            ),
        )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td></tr>",
            ((f.index + 1, matches_label(list(f.matches.all()))) for f in faces),
        )
        # Boxes drawn in SVG over the preview (no inline styles: the CSP forbids them).
        return format_html(
            '<svg class="findme-faces" viewBox="0 0 {} {}" role="img" '
            'aria-label="The photo, with its {} faces framed and numbered">'
            '<image href="{}" width="{}" height="{}"></image>{}</svg>'
            '<table class="findme-face-table"><thead><tr><th scope="col">Face</th>'
            '<th scope="col">Matched to (distance)</th></tr></thead><tbody>{}</tbody></table>',
            width,
            height,
            len(faces),
            reverse("photo-preview", args=[obj.pk]),
            width,
            height,
            boxes,
            rows,
        )
