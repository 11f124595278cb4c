"""Under /api/, Django's own refusals answer in the API's error shape, not as HTML pages."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.test import Client, override_settings
from django.urls import include, path

from config.urls import urlpatterns as project_urlpatterns


def _plain_post(request):
    return HttpResponse("posted")


def _plain_forbidden(request):
    raise PermissionDenied


def _plain_missing(request):
    raise Http404


def _plain_bug(request):
    raise RuntimeError("a bug nobody caught")


# Plain Django views (not DRF) under /api/, beside the real project: CSRF, PermissionDenied,
# Http404 and an uncaught exception take Django's own paths there.
urlpatterns = [
    path("api/test-plain/post/", _plain_post),
    path("api/test-plain/forbidden/", _plain_forbidden),
    path("api/test-plain/missing/", _plain_missing),
    path("api/test-plain/bug/", _plain_bug),
    path("", include(project_urlpatterns)),
]
handler400 = "core.views.bad_request"
handler403 = "core.views.permission_denied"
handler404 = "core.views.not_found"
handler500 = "core.views.server_error"

plain_views = override_settings(ROOT_URLCONF=__name__)


def error_of(response) -> dict:
    assert response["Content-Type"] == "application/json", response.content[:200]
    body = json.loads(response.content)
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str) and body["error"]["message"]
    return body["error"]


@pytest.mark.django_db
def test_a_host_not_served_answers_400_disallowed_host():
    response = Client().get("/api/health/", headers={"host": "evil.example"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "disallowed_host"


@pytest.mark.django_db
def test_outside_the_api_a_bad_host_still_gets_the_html_page():
    response = Client().get("/accounts/login/", headers={"host": "evil.example"})
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.django_db
def test_a_form_body_over_the_memory_limit_answers_413_and_closes(settings):
    body = "username=" + "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)
    response = Client().post(
        "/api/auth/token/", body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"
    assert response["Connection"] == "close"


@pytest.mark.django_db
def test_a_json_body_over_the_memory_limit_answers_413(settings):
    body = json.dumps({"username": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)})
    response = Client().post("/api/auth/token/", body, content_type="application/json")
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


@pytest.mark.django_db
def test_too_many_form_fields_answer_400_too_many_fields(settings):
    fields = "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = Client().post(
        "/api/auth/token/", fields, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "too_many_fields"


@pytest.mark.django_db
def test_an_answer_after_the_whole_body_was_read_keeps_the_connection():
    response = Client().post(
        "/api/auth/token/",
        {"username": "nobody", "password": "wrong"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_credentials"
    assert not response.has_header("Connection")


@pytest.mark.django_db
@plain_views
def test_a_csrf_failure_on_a_plain_view_answers_403_csrf_failed(attendee):
    client = Client(enforce_csrf_checks=True)
    client.force_login(attendee)
    response = client.post("/api/test-plain/post/", {"a": "1"})
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "csrf_failed"
    assert "CSRF" in error["detail"]["reason"]


@pytest.mark.django_db
def test_a_session_post_to_the_api_without_csrf_token_answers_in_the_shape(attendee):
    client = Client(enforce_csrf_checks=True)
    client.force_login(attendee)
    response = client.delete("/api/me/face-data/")
    assert response.status_code == 403
    error_of(response)


@pytest.mark.django_db
def test_outside_the_api_a_csrf_failure_is_django_s_page(attendee):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"username": "a", "password": "b"})
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


@plain_views
def test_permission_denied_in_a_plain_view_answers_403_permission_denied():
    response = Client().get("/api/test-plain/forbidden/")
    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"


@plain_views
def test_http404_in_a_plain_view_and_an_unknown_path_answer_404_not_found():
    for url in ("/api/test-plain/missing/", "/api/no-such-endpoint/"):
        response = Client().get(url)
        assert response.status_code == 404
        assert error_of(response)["code"] == "not_found"


@plain_views
def test_anything_uncaught_answers_500_server_error():
    response = Client(raise_request_exception=False).get("/api/test-plain/bug/")
    assert response.status_code == 500
    assert error_of(response)["code"] == "server_error"


@plain_views
def test_an_uncaught_error_before_the_body_was_read_closes_the_connection():
    response = Client(raise_request_exception=False).generic(
        "POST", "/api/test-plain/bug/", b"x" * 1000, content_type="application/octet-stream"
    )
    assert response.status_code == 500
    assert response["Connection"] == "close"


def test_a_development_server_gets_no_hop_by_hop_header(live_server):
    """wsgiref's servers (runserver, the live server) answer 500 to an application that sets
    ``Connection``: an early 401 must stay a 401 there."""
    import httpx

    answer = httpx.post(
        f"{live_server.url}/api/events/nowhere/photos/check/",
        json={"sha256": ["0" * 64]},
        headers={"Authorization": "Token not-a-token"},
        timeout=30,
    )
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "authentication_failed"
