"""Middleware of FindMe's own.

Outages answer 503, never 500, for every view: plain Django views and pages included.

DRF views map their own exceptions in ``core.errors.api_exception_handler``; this middleware
does the same for everything else, with the same mapping (``core.errors.outage_of``). Put it
last in ``MIDDLEWARE``: its ``process_exception`` then runs first.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
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


def _body_left_unread(request: HttpRequest) -> bool:
    stream = getattr(request, "_stream", None)
    if isinstance(stream, LimitedStream):
        return stream._pos < stream.limit
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return length > 0 and not getattr(request, "_read_started", False)


class UnreadBodyCloseMiddleware:
    """An error answered before the request body was read closes the connection.

    Otherwise the server advertises keep-alive and must either read the rest of a body it has
    refused (a 413 for a gigabyte) or drop the connection under a client that is still sending.
    gunicorn drops an application's hop-by-hop headers: ``core.wsgi`` turns the mark into
    gunicorn's own close. runserver drains an unread body and must not be sent the header. Put
    it first in ``MIDDLEWARE`` so it sees the final answer, including Django's own 400/413
    handlers'.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and _body_left_unread(request)
            # wsgiref's servers (runserver, the test live server) refuse any hop-by-hop header
            # from the application with a 500; they drain an unread body themselves.
            and not request.META.get("SERVER_SOFTWARE", "").startswith("WSGIServer")
        ):
            response["Connection"] = "close"
        return response


class PermissionsPolicyMiddleware:
    """Deny powerful browser features on every page; the selfie page alone may use the camera."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        denied = settings.PERMISSIONS_POLICY_DENIED
        self.default = ", ".join(f"{feature}=()" for feature in denied)
        self.camera = ", ".join(
            f"{feature}=(self)" if feature == "camera" else f"{feature}=()" for feature in denied
        )

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        match = request.resolver_match
        allows_camera = (
            match is not None and match.url_name in settings.PERMISSIONS_POLICY_CAMERA_URL_NAMES
        )
        response.setdefault("Permissions-Policy", self.camera if allows_camera else self.default)
        return response
