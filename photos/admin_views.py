"""The staff queue page in the admin: live statistics, failures, and where to act on them."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from .monitoring import queue_stats
from .selectors import photo_list_failed


def queue_dashboard(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Queue statistics",
        "stats": queue_stats(),
        "failed": photo_list_failed(limit=20),
    }
    return TemplateResponse(request, "admin/queue_stats.html", context)
