"""Server-rendered pages: joining an event, its QR code for staff, and the attendee's gallery."""

from __future__ import annotations

import io
import secrets
from datetime import UTC

import segno
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import dateformat
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts.ratelimits import limit_check, limit_hit, limited_page
from accounts.selectors import selfie_get
from core.errors import NotFound
from events.models import Event
from faces import services as faces_services

from . import selectors, services
from .api_gallery import my_photos_snapshot
from .gallery import gallery_grouping, gallery_groups
from .links import photo_url_maker
from .models import Photo
from .naming import photo_download_name

MY_PHOTOS_PER_PAGE = 60


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("my-photos")
    return redirect("login")


def _join_failed(request: HttpRequest, slug: str) -> HttpResponse:
    return render(request, "photos/join_failed.html", {"slug": slug}, status=404)


@login_required
def event_join_page(request: HttpRequest, slug: str) -> HttpResponse:
    """GET shows the event the link leads to; POST joins it (a GET never changes anything)."""
    code = (request.POST.get("code") or request.GET.get("code") or "").strip()
    # Wrong codes are counted, per IP and per member, so codes cannot be guessed: a GET tells a
    # right code from a wrong one as well as a POST.
    account = str(request.user.pk)
    if (wait := limit_check(request, scope="join", account=account)) is not None:
        return limited_page(request, wait)
    if request.method == "POST":
        try:
            event = services.event_join(user=request.user, slug=slug, join_code=code)
        except NotFound:
            limit_hit(request, scope="join", account=account)
            return _join_failed(request, slug)
        messages.success(request, f"You joined {event.name}.")
        if selfie_get(user_id=request.user.pk) is None:
            return redirect("selfie")
        return redirect(f"{reverse('my-photos')}?event={event.slug}")

    try:
        event = selectors.event_get(slug=slug)
    except NotFound:
        limit_hit(request, scope="join", account=account)
        return _join_failed(request, slug)
    if not code or not secrets.compare_digest(code, event.join_code):
        limit_hit(request, scope="join", account=account)
        return _join_failed(request, slug)
    if selectors.membership_exists(user=request.user, event=event):
        return redirect(f"{reverse('my-photos')}?event={event.slug}")
    return render(request, "photos/join.html", {"event": event, "code": code})


def _staff_event(request: HttpRequest, slug: str) -> Event:
    if not request.user.is_staff:
        raise Http404("No event here.")
    try:
        return selectors.event_get(slug=slug)
    except NotFound:
        raise Http404("No event here.") from None


def _join_qr(request: HttpRequest, event: Event) -> segno.QRCode:
    return segno.make(request.build_absolute_uri(event.join_path), error="m")


@login_required
def event_qr_page(request: HttpRequest, slug: str) -> HttpResponse:
    """A page staff can show on a screen or print: the join link as a QR code, and as text."""
    event = _staff_event(request, slug)
    qr = _join_qr(request, event)
    svg = qr.svg_inline(
        scale=8, dark="#111", light="#fff", omitsize=True, svgclass="qr", title=f"Join {event.name}"
    )
    return render(
        request,
        "photos/event_qr.html",
        {"event": event, "qr_svg": svg, "join_url": request.build_absolute_uri(event.join_path)},
    )


@login_required
def event_qr_svg(request: HttpRequest, slug: str) -> HttpResponse:
    event = _staff_event(request, slug)
    out = io.BytesIO()
    _join_qr(request, event).save(out, kind="svg", scale=10, title=f"Join {event.name}")
    response = HttpResponse(out.getvalue(), content_type="image/svg+xml")
    response["Content-Disposition"] = f'attachment; filename="findme-{event.slug}-qr.svg"'
    response["Cache-Control"] = "private, no-store"
    return response


TILE_URLS = {
    "preview": "photo-preview",
    "original": "photo-original",
    "thumb": "photo-thumb",
    "not_me": "not-me",
    "not_me_api": "api-photo-not-me",
    "not_me_undo_api": "api-photo-not-me-undo",
}
# The photo last removed with the no-JavaScript "Not me", offered for undo on the next page.
UNDO_SESSION_KEY = "not_me_undo"


def _photo_description(photo: Photo) -> str:
    """The thumbnail's alternative text, and what its selection box is named after."""
    text = f"Photo from {photo.event.name}"
    if photo.taken_at:
        text += f", taken {dateformat.format(photo.taken_at.astimezone(UTC), 'j M Y, H:i')}"
    return text


@login_required
def my_photos_page(request: HttpRequest) -> HttpResponse:
    user = request.user
    events = list(selectors.event_list_for_member(user=user))
    event = None
    if slug := request.GET.get("event"):
        event = next((e for e in events if e.slug == slug), None)
        if event is None:
            raise Http404("You have not joined this event.")

    # Before the photos: the page then shows at least what the ETag it polls with stands for.
    live = my_photos_snapshot(request, event_slug=event.slug if event else None) if events else None
    span = selectors.photo_span_for_user(user=user, event=event)
    paginator = Paginator(selectors.photo_list_for_user(user=user, event=event), MY_PHOTOS_PER_PAGE)
    paginator.count = span.count  # counted with the span: one query, not two
    page = paginator.get_page(request.GET.get("page"))
    makers = {key: photo_url_maker(name) for key, name in TILE_URLS.items()}
    for photo in page.object_list:
        photo.urls = {key: make(photo.pk) for key, make in makers.items()}
        photo.download_name = photo_download_name(photo)
        photo.description = _photo_description(photo)
    grouping = gallery_grouping(span.first, span.last)
    selfie = selfie_get(user_id=user.pk)
    undo = None
    if (undo_id := request.session.pop(UNDO_SESSION_KEY, None)) is not None:
        undo = {"url": reverse("not-me-undo", kwargs={"photo_id": undo_id})}
    return render(
        request,
        "photos/my_photos.html",
        {
            "page": page,
            "photos": page.object_list,
            "groups": gallery_groups(page.object_list, grouping),
            "grouping": grouping,
            "events": events,
            "event": event,
            "selfie": selfie,
            "pending": selectors.photos_pending_for_user(user=user, event=event),
            "live": live,
            "this_page": request.get_full_path(),
            "undo": undo,
        },
    )


def _back(request: HttpRequest) -> HttpResponse:
    """To the page named in ``next`` if it is on this site, else to the gallery."""
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, {request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("my-photos")
    return redirect(target)


@login_required
@require_POST
def not_me(request: HttpRequest, photo_id: int) -> HttpResponse:
    """The no-JavaScript path of "Not me": reject the match, then back to the same page, which
    offers to undo it."""
    if faces_services.match_reject(user_id=request.user.pk, photo_id=photo_id):
        request.session[UNDO_SESSION_KEY] = photo_id
    else:
        messages.info(request, "That photo was already gone from your gallery.")
    return _back(request)


@login_required
@require_POST
def not_me_undo(request: HttpRequest, photo_id: int) -> HttpResponse:
    """Undo "Not me", shortly after it (faces.services.match_restore says how shortly)."""
    if faces_services.match_restore(user_id=request.user.pk, photo_id=photo_id):
        messages.success(request, "The photo is back in your gallery.")
    else:
        messages.info(request, "That can no longer be undone.")
    return _back(request)
