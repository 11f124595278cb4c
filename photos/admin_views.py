"""The staff queue page in the admin: live statistics, failures, and where to act on them."""

from __future__ import annotations

import io

from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from PIL import Image

from core.imaging import encode
from faces.models import Face

from .models import Rendition
from .monitoring import queue_stats
from .selectors import photo_list_failed


def queue_dashboard(request: HttpRequest) -> HttpResponse:
    """The page, or (``?part=live``) its live figures alone, which the page fetches every 5 s:
    one source (``queue_stats``, as the API), formatted once, here."""
    if request.GET.get("part") == "live":
        return TemplateResponse(request, "admin/queue_stats_live.html", {"stats": queue_stats()})
    context = {
        **admin.site.each_context(request),
        "title": "Queue statistics",
        "stats": queue_stats(),
        "failed": photo_list_failed(limit=20),
    }
    return TemplateResponse(request, "admin/queue_stats.html", context)


CROP_SIDE = 160
CROP_MARGIN = 0.25  # of the face's size, on each side: a face with its hair and chin


def face_crop(request: HttpRequest, face_id: int) -> HttpResponse:
    """Staff (wrapped in admin_view): one face, cut from its photo's preview, for the faces and
    clusters pages. The box is a fraction of the upright photo, as the preview is."""
    face = (
        Face.objects.filter(pk=face_id).only("photo_id", "left", "top", "width", "height").first()
    )
    preview = (
        Rendition.objects.filter(photo_id=face.photo_id).values_list("preview", flat=True).first()
        if face
        else None
    )
    if not preview:
        raise Http404("No such face, or its photo has no preview yet.")
    with Image.open(io.BytesIO(bytes(preview))) as image:
        w, h = image.size
        mx, my = face.width * CROP_MARGIN, face.height * CROP_MARGIN
        box = (
            max(0, round((face.left - mx) * w)),
            max(0, round((face.top - my) * h)),
            min(w, round((face.left + face.width + mx) * w)),
            min(h, round((face.top + face.height + my) * h)),
        )
        crop = image.convert("RGB").crop(box)
    crop.thumbnail((CROP_SIDE, CROP_SIDE))
    response = HttpResponse(encode(crop, "JPEG", quality=85), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response
