"""The staff queue page in the admin: live statistics, failures, and where to act on them."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

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
