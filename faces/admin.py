"""Faces, matches and the clusters of faces nobody claims, for staff.

Every change goes through the services (faces.services.face_assign, cluster_assign,
match_reject): they check that the member belongs to the event, respect "not me", and refresh
the galleries concerned at once. The raw Match form, which did none of that, is read-only.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from core.errors import ApplicationError

from . import services
from .models import Cluster, EngineCall, Face, Match
from .selectors import cluster_faces
from .services.matching import galleries_changed

STRIP_FACES = 12


class FindMeAdminMedia:
    css = {"all": ("admin-findme/admin.css",)}


def _crop(face_id: int, *, size: int = 80) -> str:
    return format_html(
        '<img class="findme-crop" src="{}" alt="Face {}" width="{}" height="{}" loading="lazy">',
        reverse("face-crop", args=[face_id]),
        face_id,
        size,
        size,
    )


def matches_label(matches: list[Match]) -> str:
    """Who a face is matched to, at what distance, by whom: "ann (0.432, by staff)"."""
    if not matches:
        return "nobody"
    return format_html_join(
        ", ",
        "{} ({}{})",
        (
            (
                m.user.get_username(),
                f"{m.distance:.3f}",
                (", by staff" if m.assigned else "") + (", said not me" if m.rejected else ""),
            )
            for m in matches
        ),
    )


class AssignForm(forms.ModelForm):
    """A face or a cluster's change page: give it to one of the event's members."""

    assign_to = forms.ModelChoiceField(
        queryset=get_user_model().objects.none(),
        required=False,
        label="Assign to member",
        help_text="A member of this event: the face becomes theirs at once, and stays theirs "
        "when the event is matched again.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        event_id = getattr(self.instance, "event_id", None)
        self.fields["assign_to"].queryset = (
            get_user_model().objects.filter(memberships__event_id=event_id).order_by("username")
        )


class FaceForm(AssignForm):
    remove_match = forms.BooleanField(
        required=False,
        label="Not this member",
        help_text="Remove the face's match; it is kept as rejected, so no new matching brings "
        'it back, as when the member says "not me".',
    )

    class Meta:
        model = Face
        fields: list[str] = []


class ClusterForm(AssignForm):
    class Meta:
        model = Cluster
        fields: list[str] = []


@admin.register(Face)
class FaceAdmin(admin.ModelAdmin):
    Media = FindMeAdminMedia
    form = FaceForm
    list_display = ("crop", "photo_link", "index", "matched_to", "cluster", "engine")
    list_filter = ("engine", "event")
    list_select_related = ("photo",)
    readonly_fields = ("crop_large", "photo_link", "index", "event", "matched_to", "cluster")
    fields = ("crop_large", "photo_link", "event", "index", "matched_to", "cluster")
    search_fields = ("=photo__id",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Face]:
        live = Match.objects.filter(rejected=False).select_related("user")
        return (
            super()
            .get_queryset(request)
            .defer("descriptor")
            .prefetch_related(Prefetch("matches", queryset=live, to_attr="live_matches"))
        )

    def get_fields(self, request, obj=None):
        return [*self.fields, "assign_to", "remove_match"] if obj else self.fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # faces come from processing photos

    @admin.display(description="Face")
    def crop(self, obj: Face) -> str:
        return _crop(obj.pk)

    @admin.display(description="Face")
    def crop_large(self, obj: Face) -> str:
        return _crop(obj.pk, size=160)

    @admin.display(description="Photo")
    def photo_link(self, obj: Face) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:photos_photo_change", args=[obj.photo_id]),
            obj.photo,
        )

    @admin.display(description="Matched to")
    def matched_to(self, obj: Face) -> str:
        matches = getattr(obj, "live_matches", None)
        if matches is None:
            matches = list(obj.matches.filter(rejected=False).select_related("user"))
        return matches_label(matches)

    def save_model(self, request: HttpRequest, obj: Face, form, change: bool) -> None:
        # Nothing of the face itself is edited: the form only says what to do with it.
        member = form.cleaned_data.get("assign_to")
        try:
            if form.cleaned_data.get("remove_match"):
                removed = 0
                for match in obj.matches.filter(rejected=False):
                    removed += services.match_reject(user_id=match.user_id, photo_id=obj.photo_id)
                self.message_user(request, f"{removed} match removed.", messages.SUCCESS)
            if member is not None:
                services.face_assign(face_id=obj.pk, user_id=member.pk)
                self.message_user(
                    request, f"The face is {member.get_username()}'s now.", messages.SUCCESS
                )
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    """The faces nobody claims, grouped by likeness, largest first; one form gives a whole
    cluster to a member."""

    Media = FindMeAdminMedia
    form = ClusterForm
    list_display = ("name", "event", "size", "strip")
    list_filter = ("event",)
    ordering = ("-size", "key")
    readonly_fields = ("event", "size", "strip_all")
    fields = ("event", "size", "strip_all", "assign_to")
    list_select_related = ("event",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # clusters come from settling an event's faces

    def get_queryset(self, request: HttpRequest) -> QuerySet[Cluster]:
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch("faces", queryset=Face.objects.only("pk", "cluster_id").order_by("pk"))
            )
        )

    @admin.display(description="Cluster", ordering="key")
    def name(self, obj: Cluster) -> str:
        return f"Person {obj.key}"

    @admin.display(description="Faces")
    def strip(self, obj: Cluster) -> str:
        faces = list(obj.faces.all())[:STRIP_FACES]
        return format_html_join("", "{}", ((_crop(face.pk, size=56),) for face in faces))

    @admin.display(description="Faces")
    def strip_all(self, obj: Cluster) -> str:
        faces = cluster_faces(cluster_id=obj.pk)
        return format_html(
            '<div class="findme-strip">{}</div>',
            format_html_join("", "{}", ((_crop(face.pk, size=96),) for face in faces)),
        )

    def save_model(self, request: HttpRequest, obj: Cluster, form, change: bool) -> None:
        member = form.cleaned_data.get("assign_to")
        if member is None:
            return
        try:
            count = services.cluster_assign(cluster_id=obj.pk, user_id=member.pk)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(
            request,
            f"{count} faces are {member.get_username()}'s now; their gallery shows the photos.",
            messages.SUCCESS,
        )


@admin.register(Match)
class MatchAdmin(admin.ModelAdmin):
    """Matches change through the faces and clusters pages (or the member's own "not me"),
    which keep galleries and memberships right; here they are listed, and deleted (alone or
    with their photo, event or user) with the members' galleries refreshed."""

    list_display = ("id", "user", "photo", "distance", "assigned", "rejected", "created_at")
    list_filter = ("rejected", "assigned")
    search_fields = ("user__username",)
    list_select_related = ("user", "photo")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Match) -> None:
        with transaction.atomic():
            obj.delete()
            galleries_changed([obj.user_id])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Match]) -> None:
        with transaction.atomic():
            user_ids = sorted(set(queryset.values_list("user_id", flat=True)))
            queryset.delete()
            galleries_changed(user_ids)


@admin.register(EngineCall)
class EngineCallAdmin(admin.ModelAdmin):
    list_display = ("engine", "operation", "count", "updated_at")
    readonly_fields = ("engine", "operation", "count", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # counted by the engines as they are called
