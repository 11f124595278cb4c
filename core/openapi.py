"""OpenAPI building blocks for the views' ``extend_schema`` decorators (drf-spectacular).

Every 4xx and 5xx of ../shared/API.md has one shape, the ``ErrorBody`` component; each view
lists the statuses it can answer, success and errors alike, so that a fuzzer (schemathesis)
can hold the server to them.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers


class AutoSchema(SpectacularAutoSchema):
    """Components named after their view: every view nests its own ``InputSerializer``, and
    the plain class names would collide (``SignupApi.InputSerializer`` -> ``SignupApiInput``)."""

    def get_serializer_name(self, serializer: serializers.Serializer, direction: str) -> str:
        qualname = type(serializer).__qualname__
        if "." in qualname:
            return qualname.replace(".", "")
        return super().get_serializer_name(serializer, direction)


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="snake_case, e.g. not_found, rate_limited")
    message = serializers.CharField(help_text="A sentence a person can act on.")
    detail = serializers.DictField(
        required=False, help_text="Field validation errors: {field: [messages]}."
    )


class ErrorBodySerializer(serializers.Serializer):
    error = ErrorSerializer()

    class Meta:
        ref_name = "ErrorBody"


_MEANINGS = {
    400: "invalid input (`detail` names the fields)",
    401: "not logged in, or the token is unknown or expired",
    403: "logged in without the right to this endpoint (staff only), or a CSRF failure",
    404: "not found, or not yours to see (existence is never revealed)",
    405: "method not allowed",
    406: "the Accept header asks for what this endpoint cannot send",
    412: "an If-Match that does not hold",
    413: "the body is too large",
    415: "a body of a type this endpoint does not read",
    429: "rate_limited: past the limit, with a Retry-After header",
    503: "unavailable (database, broker or cache down, or queue_full), with Retry-After",
}

# Any request whose body or headers are wrong can meet these, whatever the endpoint.
COMMON = (400, 405, 406, 413, 415, 503)
AUTHED = (*COMMON, 401)  # IsAuthenticated
STAFF = (*AUTHED, 403)  # IsAdminUser


def errors(*statuses: int, **meanings: str) -> dict[int, OpenApiResponse]:
    """The error statuses of an endpoint, each as ``ErrorBody``. ``meanings`` (``e404=...``)
    replace the generic description of a status for this endpoint."""
    return {
        status: OpenApiResponse(
            response=ErrorBodySerializer,
            description=meanings.get(f"e{status}", _MEANINGS.get(status, "error")),
        )
        for status in sorted(set(statuses))
    }


def fields(component: str, /, **declared: serializers.Field) -> Any:
    """A named inline object schema for a JSON answer that no serializer class renders."""
    return inline_serializer(name=component, fields=declared)


NOT_MODIFIED = OpenApiResponse(description="Not modified: If-None-Match held the current ETag")
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/heic")


def binary(description: str, media_types: tuple[str, ...]) -> dict[Any, Any]:
    """A 200 of raw bytes in each of ``media_types``."""
    return {
        (200, media): OpenApiResponse(response=OpenApiTypes.BINARY, description=description)
        for media in media_types
    }
