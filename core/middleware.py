"""Outages answer 503, never 500, for every view: plain Django views and pages included.

DRF views map their own exceptions in ``core.errors.api_exception_handler``; this middleware
does the same for everything else, with the same mapping (``core.errors.outage_of``). Put it
last in ``MIDDLEWARE``: its ``process_exception`` then runs first.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .errors import outage_logged, outage_of
from .views import outage_response


class OutageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        outage = outage_of(exception)
        if outage is None:
            return None  # a bug: Django's 500 handler answers, and it is logged as an error
        outage_logged(exception, outage, request.path)
        return outage_response(request, outage)
