"""GET /api/schema/ and /api/docs/: the schema carries the error shape and every status of API.md."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

# ../shared/API.md, endpoint by endpoint: the statuses it names (errors of every endpoint,
# 401, 403, 503 and the like, come on top).
CONTRACT = {
    ("/api/auth/signup/", "post"): {201, 400, 429},
    ("/api/auth/token/", "post"): {200, 400, 429},
    ("/api/events/", "get"): {200},
    ("/api/events/", "post"): {201},
    ("/api/events/{slug}/", "get"): {200},
    ("/api/events/{slug}/photos/", "post"): {201, 200, 400, 413, 503},
    ("/api/events/{slug}/photos/", "get"): {200},
    ("/api/events/{slug}/photos/check/", "post"): {200},
    ("/api/photos/{photo_id}/status/", "get"): {200},
    ("/api/events/{slug}/join/", "post"): {200, 404, 429},
    ("/api/me/selfie/", "put"): {201, 400, 429},
    ("/api/me/", "get"): {200},
    ("/api/me/face-data/", "delete"): {204},
    ("/api/my-photos/", "get"): {200, 304},
    ("/api/photos/{photo_id}/not-me/", "post"): {204, 404},
    ("/api/photos/{photo_id}/thumb/", "get"): {200, 304, 404},
    ("/api/photos/{photo_id}/preview/", "get"): {200, 304, 404},
    ("/api/photos/{photo_id}/original/", "get"): {200, 304, 404},
    ("/api/my-photos/download.zip", "get"): {200},
    ("/api/admin/queue/stats/", "get"): {200},
    ("/api/health/", "get"): {200, 503},
}
# The one error that is not in the error shape: health's 503 is its own report.
NOT_ERROR_SHAPED = {("/api/health/", "get", "503")}


@pytest.fixture(scope="module")
def schema(django_db_blocker) -> dict:
    with django_db_blocker.unblock():
        answer = APIClient().get("/api/schema/", {"format": "json"})
    assert answer.status_code == 200
    return answer.json()


def test_schema_declares_the_error_shape(schema):
    error = schema["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]
    inner = schema["components"]["schemas"]["Error"]
    assert set(inner["properties"]) == {"code", "message", "detail"}
    assert set(inner["required"]) == {"code", "message"}


@pytest.mark.parametrize(("path", "method"), sorted(CONTRACT))
def test_every_status_of_the_contract_is_in_the_schema(schema, path, method):
    operation = schema["paths"][path][method]
    declared = {int(code) for code in operation["responses"]}
    assert CONTRACT[path, method] <= declared


def test_every_error_answer_is_the_error_shape(schema):
    checked = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                if int(code) < 400 or (path, method, code) in NOT_ERROR_SHAPED:
                    continue
                refs = {c["schema"]["$ref"] for c in response["content"].values()}
                assert refs == {"#/components/schemas/ErrorBody"}, (path, method, code)
                checked += 1
    assert checked > 100


def test_image_answers_are_declared_as_bytes_of_their_type(schema):
    content = schema["paths"]["/api/photos/{photo_id}/original/"]["get"]["responses"]["200"]
    assert set(content["content"]) == {"image/jpeg", "image/png", "image/webp", "image/heic"}
    assert content["content"]["image/jpeg"]["schema"] == {"type": "string", "format": "binary"}


def test_schema_generation_has_no_warning():
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_docs_are_served_from_our_own_static_files():
    answer = APIClient().get("/api/docs/")
    assert answer.status_code == 200
    html = answer.content.decode()
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in scripts
    # Nothing fetched from elsewhere, and no inline script for the CSP to refuse.
    assert all(src.startswith("/") for src in scripts)
    assert not re.search(r"<script>", html)
    loader = APIClient().get(scripts[-1])
    assert loader.status_code == 200
    assert "/api/schema/" in loader.content.decode()
