"""Error pages: JSON in the API's error shape under /api/, HTML elsewhere."""

from __future__ import annotations

import sys

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views import csrf, defaults

from .errors import (
    Outage,
    error_body,
    json_400,
    json_403,
    json_404,
    json_500,
    json_csrf_failure,
    outage_of,
)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    # Reached for every SuspiciousOperation: a bad Host, an oversized body, too many fields.
    if request.path.startswith("/api/"):
        return json_400(request, exception)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_403(request, exception)
    return defaults.permission_denied(request, exception)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_csrf_failure(request, reason)
    return csrf.csrf_failure(request, reason)


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
