"""The member's face data as pages: give a selfie with consent, see its state, delete it all."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import quote_etag, urlencode

from accounts.ratelimits import limit_hit, limited_page
from accounts.selectors import selfie_get, selfie_image
from core.errors import ApplicationError
from core.imaging import encode, resized
from events.selectors import member_has_events

from . import services


def _selfie_render(
    request: HttpRequest, *, error: str = "", error_code: str = "", status: int = 200
) -> HttpResponse:
    return render(
        request,
        "faces/selfie.html",
        {
            "selfie": selfie_get(user_id=request.user.pk),
            "error": error,
            "error_code": error_code,
            "max_upload_mb": settings.PHOTO_MAX_UPLOAD_MB,
            "has_events": member_has_events(user_id=request.user.pk),
            # A refused photo should not cost the member their tick as well.
            "consent_given": request.method == "POST" and bool(request.POST.get("consent")),
            "gallery_url": _gallery_path(request),
            "selfie_path": _selfie_path(request),
        },
        status=status,
    )


def _gallery_path(request: HttpRequest) -> str:
    slug = request.GET.get("event", "")
    return f"{reverse('my-photos')}?{urlencode({'event': slug})}" if slug else reverse("my-photos")


def _selfie_upload(request: HttpRequest):
    """The photo sent: the form offers the camera and the file picker as two inputs."""
    return next((f for f in request.FILES.getlist("file") if f.size), None)


@login_required
def selfie_page(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _selfie_render(request)
    # Each selfie is decoded and searched for faces in the web process: every try counts.
    if (wait := limit_hit(request, scope="selfie", account=str(request.user.pk))) is not None:
        return limited_page(request, wait)
    if getattr(request, "upload_too_large", False):
        return _selfie_render(
            request,
            error=f"This photo is larger than {settings.PHOTO_MAX_UPLOAD_MB} MB. Choose a smaller one.",
            status=413,
        )
    upload = _selfie_upload(request)
    consent = request.POST.get("consent", "")
    if upload is None and consent:
        return _selfie_render(
            request, error="Choose a photo of your face, or take one.", status=400
        )
    try:
        services.selfie_register(user=request.user, upload=upload, consent=consent)
    except ApplicationError as exc:
        return _selfie_render(request, error=exc.message, error_code=exc.code, status=400)
    messages.success(
        request, "Thank you. Your selfie is being read; your photos will appear in My photos."
    )
    return redirect(_selfie_path(request))


def _selfie_path(request: HttpRequest) -> str:
    """The selfie page again, keeping the event the member came from (where to go next)."""
    slug = request.GET.get("event", "")
    return f"{reverse('selfie')}?{urlencode({'event': slug})}" if slug else reverse("selfie")


SELFIE_PHOTO_SIDE = 320


@login_required
def selfie_photo(request: HttpRequest) -> HttpResponse:
    """The member's own selfie, small and upright, for the selfie page; nobody else's, ever."""
    selfie = selfie_get(user_id=request.user.pk)
    if selfie is None:
        raise Http404("No selfie.")
    etag = quote_etag(f"selfie-{selfie.pk}-{int(selfie.consent_at.timestamp())}")
    if request.headers.get("If-None-Match") == etag:
        response = HttpResponse(status=304)
    else:
        try:
            image = resized(selfie_image(user_id=request.user.pk), SELFIE_PHOTO_SIDE)
        except OSError:
            raise Http404("The selfie file is gone.") from None
        response = HttpResponse(encode(image, "JPEG", quality=85), content_type="image/jpeg")
    response["ETag"] = etag
    response["Cache-Control"] = "private, no-cache"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
def face_data_delete_page(request: HttpRequest) -> HttpResponse:
    """A confirmation page (GET) and the deletion (POST): two steps, no JavaScript needed."""
    if request.method == "POST":
        services.member_forget(user_id=request.user.pk)
        messages.success(
            request,
            "Your selfie, your face data and your matches are deleted. Your gallery is empty.",
        )
        return redirect("selfie")
    return render(
        request, "faces/face_data_delete.html", {"selfie": selfie_get(user_id=request.user.pk)}
    )
