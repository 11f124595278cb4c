"""The event's own pages, where its QR code leads: the landing page, a guest's start, and the
cover and logo the organiser set."""

from __future__ import annotations

import mimetypes

from django.contrib import messages
from django.contrib.auth import login
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.ratelimits import limit_check, limit_hit, limited_page
from core.errors import NotFound
from events.models import Event

from . import selectors, services


def _code_page(request: HttpRequest, slug: str, *, code: str) -> HttpResponse:
    """The code was missing (ask for it) or wrong (say so, and ask again)."""
    return render(
        request,
        "photos/event_code.html",
        {"slug": slug, "code": code, "wrong": bool(code)},
        status=404 if code else 200,
    )


def _join_account(request: HttpRequest, slug: str) -> str:
    # Wrong codes are counted per IP and per member, or per event for visitors.
    return str(request.user.pk) if request.user.is_authenticated else f"guest:{slug}"


def event_landing(request: HttpRequest, slug: str) -> HttpResponse:
    """Where the QR code leads: the event's name, date, cover, host and photos so far, and one
    action, "Find my photos". A visitor becomes a guest; a member goes on to their gallery."""
    code = (request.GET.get("code") or "").strip()
    account = _join_account(request, slug)
    if (wait := limit_check(request, scope="join", account=account)) is not None:
        return limited_page(request, wait)
    if not code:
        return _code_page(request, slug, code="")
    try:
        event = services.event_by_code(slug=slug, join_code=code)
    except NotFound:
        limit_hit(request, scope="join", account=account)
        return _code_page(request, slug, code=code)
    user = request.user
    member = user.is_authenticated and selectors.membership_exists(user=user, event=event)
    return render(
        request,
        "photos/event_landing.html",
        {
            "event": event,
            "code": code,
            "member": member,
            "photo_count": selectors.event_photo_count(event=event),
            "cover_url": branding_url(event, "cover"),
            "logo_url": branding_url(event, "logo"),
            "landing_path": request.get_full_path(),
        },
    )


@require_POST
def event_guest_start(request: HttpRequest, slug: str) -> HttpResponse:
    """ "Find my photos" for a visitor: a guest account, a member already, signed in on this
    device; next, their selfie."""
    if request.user.is_authenticated:  # signed in meanwhile: join as themselves instead
        return redirect(
            f"{reverse('event-landing', kwargs={'slug': slug})}?{request.POST.urlencode()}"
        )
    if (wait := limit_hit(request, scope="guest", account=slug)) is not None:
        return limited_page(request, wait)
    account = _join_account(request, slug)
    if (wait := limit_check(request, scope="join", account=account)) is not None:
        return limited_page(request, wait)
    code = (request.POST.get("code") or "").strip()
    try:
        user, _, event = services.event_guest_join(slug=slug, join_code=code)
    except NotFound:
        limit_hit(request, scope="join", account=account)
        return _code_page(request, slug, code=code or "?")
    login(request, user, backend="accounts.backends.RateLimitedModelBackend")
    messages.success(request, f"Welcome to {event.name}. One selfie, and we find your photos.")
    return redirect(f"{reverse('selfie')}?event={event.slug}")


def event_branding_file(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    """The event's cover or logo. Its name holds a hash of its bytes, so it never changes."""
    event = Event.objects.filter(slug=slug).only("cover", "logo").first()
    if event is None:
        raise Http404("No event here.")
    field = next(
        (f for f in (event.cover, event.logo) if f and f.name.rsplit("/", 1)[-1] == name), None
    )
    if field is None:
        raise Http404("No such file.")
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = FileResponse(field.open("rb"), content_type=content_type)
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


def branding_url(event: Event, kind: str) -> str:
    field = getattr(event, kind)
    if not field:
        return ""
    return reverse(
        "event-branding-file", kwargs={"slug": event.slug, "name": field.name.rsplit("/", 1)[-1]}
    )
