from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from core.errors import NotFound

from . import selectors, services


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("my-photos")
    return redirect("login")


@login_required
def event_join_page(request: HttpRequest, slug: str) -> HttpResponse:
    code = request.POST.get("code") or request.GET.get("code") or ""
    try:
        event = services.event_join(user=request.user, slug=slug, join_code=code)
    except NotFound:
        return render(request, "photos/join_failed.html", {"slug": slug}, status=404)
    return redirect(f"/my/?event={event.slug}")


@login_required
def my_photos_page(request: HttpRequest) -> HttpResponse:
    photos = selectors.photo_list_for_user(user=request.user)[:200]
    return render(
        request,
        "photos/my_photos.html",
        {"photos": photos, "pending": selectors.photos_pending_for_user(user=request.user)},
    )
