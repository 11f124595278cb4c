"""Rate limits per IP and per account: 429 rate_limited with Retry-After past the limit, a readable
429 page for the HTML forms, and the way back once the window has passed."""

from __future__ import annotations

import time
from unittest import mock

import pytest
from django.db import OperationalError
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from accounts.ratelimits import limit_hit
from core.cache import TolerantRedisCache
from tests.photos.test_ingest_api import assert_error

pytestmark = pytest.mark.django_db

RIGHT = "ann-pass-1234"


@pytest.fixture(autouse=True)
def _one_window():
    """django-ratelimit's windows have fixed edges: a test that ran across one would see its
    counts start again halfway (on a slow machine, often). The clock stands still in each test
    (at the real time, which the cache's expiry times are compared with); the tests that need
    time to pass patch it themselves."""
    with mock.patch("django_ratelimit.core.time.time", return_value=time.time()):
        yield


@pytest.fixture
def tight(settings):
    """Small limits, one window of a minute, so a test reaches them in a few requests."""
    settings.RATE_LIMITS = {
        "login": {"ip": "5/m", "account": "3/m"},
        "signup": {"ip": "3/m", "account": "2/m"},
        "join": {"ip": "5/m", "account": "3/m"},
        "guest": {"ip": "5/m", "account": "2/m"},
        "selfie": {"ip": "5/m", "account": "2/m"},
        "password_reset": {"ip": "5/m", "account": "2/m"},
    }
    return settings.RATE_LIMITS


def _token(username: str, password: str, ip: str = "10.0.0.1"):
    return APIClient(REMOTE_ADDR=ip).post(
        "/api/auth/token/", {"username": username, "password": password}, format="json"
    )


def _assert_limited(answer) -> int:
    error = assert_error(answer, 429, "rate_limited")
    assert "wait" in error["message"].lower()
    wait = int(answer["Retry-After"])
    assert 1 <= wait <= 60
    return wait


# --- the token endpoint -------------------------------------------------------------------------
def test_token_refuses_even_the_right_password_past_the_account_limit(tight, attendee):
    for _ in range(3):
        assert_error(_token("ann", "wrong-guess"), 400, "invalid_credentials")
    _assert_limited(_token("ann", RIGHT))


def test_token_account_limit_holds_across_ips(tight, attendee):
    for n in range(3):
        assert_error(_token("ann", "wrong-guess", ip=f"10.0.1.{n}"), 400, "invalid_credentials")
    _assert_limited(_token("ann", RIGHT, ip="10.0.1.200"))
    # The username is compared as typed in any case.
    _assert_limited(_token("ANN", RIGHT, ip="10.0.1.201"))


def test_token_ip_limit_holds_across_usernames(tight, attendee):
    for n in range(5):
        assert_error(_token(f"nobody{n}", "wrong-guess"), 400, "invalid_credentials")
    _assert_limited(_token("ann", RIGHT))
    # Another address is not held back by this one.
    assert _token("ann", RIGHT, ip="10.0.0.2").status_code == 200


def test_successful_logins_do_not_count(tight, attendee):
    for _ in range(6):
        assert _token("ann", RIGHT).status_code == 200


def test_right_password_works_again_after_the_window(tight, attendee):
    start = time.time()
    with mock.patch("django_ratelimit.core.time.time", return_value=start):
        for _ in range(3):
            assert_error(_token("ann", "wrong-guess"), 400, "invalid_credentials")
        wait = _assert_limited(_token("ann", RIGHT))
    with mock.patch("django_ratelimit.core.time.time", return_value=start + wait):
        answer = _token("ann", RIGHT)
    assert answer.status_code == 200, answer.content
    assert answer.json()["token"]


# --- the login page ----------------------------------------------------------------------------
def _login_page(username: str, password: str, ip: str = "10.0.0.1"):
    return Client(REMOTE_ADDR=ip).post(
        "/accounts/login/", {"username": username, "password": password}
    )


def test_login_page_shows_a_readable_429_past_the_limit(tight, attendee):
    for _ in range(3):
        assert _login_page("ann", "wrong-guess").status_code == 200
    page = _login_page("ann", RIGHT)
    assert page.status_code == 429
    assert int(page["Retry-After"]) >= 1
    text = page.content.decode()
    assert "Too many attempts" in text and "Try again in" in text
    assert "_auth_user_id" not in page.client.session


def test_login_page_and_token_share_one_count(tight, attendee):
    assert _login_page("ann", "wrong-guess").status_code == 200
    assert _login_page("ann", "wrong-guess").status_code == 200
    assert_error(_token("ann", "wrong-guess"), 400, "invalid_credentials")
    _assert_limited(_token("ann", RIGHT))
    assert _login_page("ann", RIGHT).status_code == 429


def test_login_page_right_password_works_after_the_window(tight, attendee):
    start = time.time()
    with mock.patch("django_ratelimit.core.time.time", return_value=start):
        for n in range(5):
            assert _login_page(f"nobody{n}", "wrong-guess").status_code == 200
        assert _login_page("ann", RIGHT).status_code == 429
    with mock.patch("django_ratelimit.core.time.time", return_value=start + 60):
        answer = _login_page("ann", RIGHT)
    assert answer.status_code == 302


# --- signup, join, selfie, password reset -------------------------------------------------------
def _signup(n: int, *, email: str | None = None, ip: str = "10.0.0.1"):
    return APIClient(REMOTE_ADDR=ip).post(
        "/api/auth/signup/",
        {
            "username": f"new{n}",
            "email": email or f"new{n}@example.com",
            "password": "correct horse battery",
        },
        format="json",
    )


def test_signup_api_is_limited_per_ip(tight, django_user_model):
    for n in range(3):
        assert _signup(n).status_code == 201
    _assert_limited(_signup(3))
    assert _signup(4, ip="10.0.0.2").status_code == 201
    assert django_user_model.objects.count() == 4


def test_signup_api_is_limited_per_email(tight):
    assert _signup(0, email="same@example.com", ip="10.0.2.1").status_code == 201
    assert_error(_signup(1, email="same@example.com", ip="10.0.2.2"), 400, "invalid")
    _assert_limited(_signup(2, email="Same@Example.com", ip="10.0.2.3"))


def test_signup_page_is_limited_per_ip(tight, django_user_model):
    client = Client(REMOTE_ADDR="10.0.0.9")
    for n in range(3):
        client.post(
            "/accounts/signup/",
            {
                "username": f"page{n}",
                "email": f"page{n}@example.com",
                "password1": "another-long-passphrase",
                "password2": "another-long-passphrase",
            },
        )
        client.logout()
    assert django_user_model.objects.count() == 3
    page = client.post(
        "/accounts/signup/",
        {
            "username": "page3",
            "email": "page3@example.com",
            "password1": "another-long-passphrase",
            "password2": "another-long-passphrase",
        },
    )
    assert page.status_code == 429 and "Too many attempts" in page.content.decode()
    assert django_user_model.objects.count() == 3


def test_join_api_counts_wrong_codes_per_member(tight, event, attendee):
    client = APIClient(REMOTE_ADDR="10.0.0.1")
    client.force_authenticate(attendee)
    for _ in range(3):
        assert_error(
            client.post(f"/api/events/{event.slug}/join/", {"join_code": "guess"}, format="json"),
            404,
            "not_found",
        )
    right = client.post(
        f"/api/events/{event.slug}/join/", {"join_code": event.join_code}, format="json"
    )
    _assert_limited(right)


def test_join_api_counts_wrong_codes_per_ip(tight, event, django_user_model):
    for n in range(5):
        member = django_user_model.objects.create_user(username=f"m{n}", password="x-pass-12345")
        client = APIClient(REMOTE_ADDR="10.0.3.1")
        client.force_authenticate(member)
        answer = client.post(f"/api/events/{event.slug}/join/", {"join_code": "g"}, format="json")
        assert answer.status_code == 404
    fresh = django_user_model.objects.create_user(username="fresh", password="x-pass-12345")
    client = APIClient(REMOTE_ADDR="10.0.3.1")
    client.force_authenticate(fresh)
    _assert_limited(
        client.post(f"/api/events/{event.slug}/join/", {"join_code": event.join_code}, "json")
    )


def test_right_join_codes_do_not_count(tight, event, attendee):
    client = APIClient(REMOTE_ADDR="10.0.0.1")
    client.force_authenticate(attendee)
    for _ in range(5):
        answer = client.post(
            f"/api/events/{event.slug}/join/", {"join_code": event.join_code}, format="json"
        )
        assert answer.status_code == 200


def test_join_page_shows_a_readable_429_after_wrong_codes(tight, event, attendee):
    client = Client(REMOTE_ADDR="10.0.0.1")
    client.force_login(attendee)
    for _ in range(2):
        assert client.post(f"/e/{event.slug}/join/", {"code": "guess"}).status_code == 404
    # Looking a code up with a GET is guessing too.
    assert client.get(f"/e/{event.slug}/join/?code=guess").status_code == 404
    page = client.post(f"/e/{event.slug}/join/", {"code": event.join_code})
    assert page.status_code == 429 and "Too many attempts" in page.content.decode()
    assert int(page["Retry-After"]) >= 1


def test_selfie_api_is_limited_per_member(tight, attendee):
    client = APIClient(REMOTE_ADDR="10.0.0.1")
    client.force_authenticate(attendee)
    for _ in range(2):
        answer = client.put("/api/me/selfie/", {}, format="multipart")
        assert answer.status_code == 400
    _assert_limited(client.put("/api/me/selfie/", {}, format="multipart"))


def test_selfie_page_is_limited_per_member(tight, attendee):
    client = Client(REMOTE_ADDR="10.0.0.1")
    client.force_login(attendee)
    for _ in range(2):
        assert client.post("/me/selfie/", {}).status_code == 400
    page = client.post("/me/selfie/", {})
    assert page.status_code == 429 and "Too many attempts" in page.content.decode()


def test_password_reset_is_limited_per_address(tight, attendee, mailoutbox):
    attendee.email = "ann@example.com"
    attendee.save()
    for n in range(2):
        sent = Client(REMOTE_ADDR=f"10.0.4.{n}").post(
            "/accounts/password-reset/", {"email": "ann@example.com"}
        )
        assert sent.status_code == 302
    page = Client(REMOTE_ADDR="10.0.4.9").post(
        "/accounts/password-reset/", {"email": "ANN@example.com"}
    )
    assert page.status_code == 429 and "Too many attempts" in page.content.decode()
    assert len(mailoutbox) == 2


def test_guest_scope_counts_per_event(tight):
    """The hook the guest endpoint will call: its own scope, per IP and per event."""
    request = RequestFactory().post("/api/events/wedding/guest/", REMOTE_ADDR="10.0.5.1")
    other_ip = RequestFactory().post("/api/events/wedding/guest/", REMOTE_ADDR="10.0.5.2")
    assert limit_hit(request, scope="guest", account="wedding") is None
    assert limit_hit(other_ip, scope="guest", account="wedding") is None
    assert limit_hit(request, scope="guest", account="wedding") >= 1
    assert limit_hit(request, scope="guest", account="party") is None


# --- limits lapse rather than break ---------------------------------------------------------------
def test_limits_off_by_setting(tight, settings, attendee):
    settings.RATELIMIT_ENABLE = False
    for _ in range(5):
        assert_error(_token("ann", "wrong-guess"), 400, "invalid_credentials")
    assert _token("ann", RIGHT).status_code == 200


def test_a_rate_given_as_off_lifts_that_limit(tight, attendee):
    tight["login"] = {"ip": "5/m", "account": None}
    for _ in range(4):
        assert_error(_token("ann", "wrong-guess", ip="10.0.6.1"), 400, "invalid_credentials")
    assert _token("ann", RIGHT, ip="10.0.6.2").status_code == 200


def test_an_unreachable_redis_fails_open(tight, attendee):
    # Nothing listens on port 1: every cache call fails to connect, as with Redis down.
    down = TolerantRedisCache("redis://127.0.0.1:1/0", {"OPTIONS": {"socket_connect_timeout": 0.2}})
    with mock.patch("django_ratelimit.core.caches", {"default": down}):
        for _ in range(5):
            assert_error(_token("ann", "wrong-guess"), 400, "invalid_credentials")
        assert _token("ann", RIGHT).status_code == 200


def test_an_unreachable_database_cache_fails_open(tight, attendee):
    locked = OperationalError("database is locked")
    with mock.patch("accounts.ratelimits.get_usage", side_effect=locked):
        assert_error(_token("ann", "wrong-guess"), 400, "invalid_credentials")
        assert _token("ann", RIGHT).status_code == 200


def test_a_bug_in_counting_is_not_swallowed(tight, attendee):
    with (
        mock.patch("accounts.ratelimits.get_usage", side_effect=KeyError("bug")),
        pytest.raises(KeyError),
    ):
        _token("ann", RIGHT)


# --- the client's address -------------------------------------------------------------------------
def test_behind_the_proxy_each_client_address_has_its_own_count(tight, settings, attendee):
    settings.RATELIMIT_CLIENT_IP_META = "HTTP_X_REAL_IP"

    def token(username: str, password: str, real_ip: str):
        return APIClient(REMOTE_ADDR="127.0.0.1", HTTP_X_REAL_IP=real_ip).post(
            "/api/auth/token/", {"username": username, "password": password}, format="json"
        )

    for n in range(5):
        assert token(f"nobody{n}", "wrong-guess", "203.0.113.7").status_code == 400
    _assert_limited(token("ann", RIGHT, "203.0.113.7"))
    assert token("ann", RIGHT, "203.0.113.8").status_code == 200


def test_a_request_that_bypassed_the_proxy_is_counted_by_its_peer(tight, settings, attendee):
    settings.RATELIMIT_CLIENT_IP_META = "HTTP_X_REAL_IP"
    for n in range(5):
        assert_error(_token(f"nobody{n}", "wrong-guess"), 400, "invalid_credentials")
    _assert_limited(_token("ann", RIGHT))


def test_admin_login_shares_the_count_and_refuses_past_it(tight, staff_user):
    for _ in range(3):
        page = Client(REMOTE_ADDR="10.0.7.1").post(
            "/admin/login/?next=/admin/", {"username": "staff", "password": "wrong-guess"}
        )
        assert page.status_code == 200
    refused = Client(REMOTE_ADDR="10.0.7.2").post(
        "/admin/login/?next=/admin/", {"username": "staff", "password": "staff-pass-123"}
    )
    assert refused.status_code == 200  # the admin's own form, refusing
    assert "_auth_user_id" not in refused.client.session
    _assert_limited(_token("staff", "staff-pass-123", ip="10.0.7.3"))


def test_logins_without_a_request_are_not_counted(tight, client, attendee):
    # The test client's login() and shell code authenticate without a request: no client to count.
    for _ in range(5):
        assert not client.login(username="ann", password="wrong-guess")
    assert client.login(username="ann", password=RIGHT)
