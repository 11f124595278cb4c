"""Error pages: JSON in the API's error shape under /api/, HTML elsewhere."""

from __future__ import annotations

import sys

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views import defaults

from .errors import Outage, error_body, json_404, json_500, outage_of


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_404(request, exception)
    return defaults.page_not_found(request, exception)


def outage_response(request: HttpRequest, outage: Outage) -> HttpResponse:
    """503 with Retry-After: the error shape under /api/, a short page elsewhere.

    The page is rendered without the request, so no context processor reads the session or the
    user: the database may be what is down.
    """
    error = outage.error()
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse(
            error_body(error.code, error.message, error.detail), status=error.status_code
        )
    else:
        response = HttpResponse(
            render_to_string(
                "503.html", {"message": error.message, "retry_after": outage.retry_after}
            ),
            status=error.status_code,
        )
    for name, value in error.headers.items():
        response[name] = value
    response["Cache-Control"] = "no-store"
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    # The last net: an outage raised outside any view (a middleware saving the session, say)
    # reaches Django's 500 handler, which is called while the exception is being handled.
    exc = sys.exc_info()[1]
    if exc is not None and (outage := outage_of(exc)) is not None:
        return outage_response(request, outage)
    if request.path.startswith("/api/"):
        return json_500(request)
    return defaults.server_error(request)
