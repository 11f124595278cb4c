"""Sign up, log in, log out and password reset, as a visitor sees them."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

pytestmark = pytest.mark.django_db


def test_signup_page_has_labelled_fields_and_a_csrf_token(client):
    page = client.get("/accounts/signup/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="csrfmiddlewaretoken"' in html
    for field in ("username", "email", "password1", "password2"):
        assert f'<label for="id_{field}"' in html


def test_signup_logs_the_new_member_in_and_follows_next(client):
    answer = client.post(
        "/accounts/signup/",
        {
            "username": "maya",
            "email": "maya@example.com",
            "password1": "a-long-passphrase",
            "password2": "a-long-passphrase",
            "next": "/e/wedding/join/?code=abc",
        },
    )
    assert answer.status_code == 302
    assert answer["Location"] == "/e/wedding/join/?code=abc"
    assert client.get("/my/").status_code == 200
    assert get_user_model().objects.get(username="maya").email == "maya@example.com"


def test_signup_requires_an_email_and_says_so(client):
    page = client.post(
        "/accounts/signup/",
        {"username": "maya", "password1": "a-long-passphrase", "password2": "a-long-passphrase"},
    )
    assert page.status_code == 200
    assert "This field is required." in page.content.decode()
    assert not get_user_model().objects.filter(username="maya").exists()


def test_signup_ignores_a_next_that_leaves_the_site(client):
    answer = client.post(
        "/accounts/signup/",
        {
            "username": "maya",
            "email": "maya@example.com",
            "password1": "a-long-passphrase",
            "password2": "a-long-passphrase",
            "next": "https://evil.example/",
        },
    )
    assert answer["Location"] == "/my/"


def test_login_and_logout(client, attendee):
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in page.content.decode()
    answer = client.post(
        "/accounts/login/", {"username": "ann", "password": "ann-pass-1234", "next": "/my/"}
    )
    assert answer.status_code == 302
    assert answer["Location"] == "/my/"
    my = client.get("/my/")
    assert "Log out" in my.content.decode()
    out = client.post("/accounts/logout/")
    assert out.status_code == 302
    assert client.get("/my/")["Location"].startswith("/accounts/login/")


def test_wrong_password_shows_a_message(client, attendee):
    page = client.post("/accounts/login/", {"username": "ann", "password": "nope"})
    assert page.status_code == 200
    assert 'role="alert"' in page.content.decode()
    assert "Please enter a correct username and password" in page.content.decode()


def test_login_without_csrf_token_is_refused(attendee):
    client = Client(enforce_csrf_checks=True)
    answer = client.post("/accounts/login/", {"username": "ann", "password": "ann-pass-1234"})
    assert answer.status_code == 403


def test_password_reset_sends_a_link_that_sets_a_new_password(client, attendee):
    attendee.email = "ann@example.com"
    attendee.save()
    assert client.get("/accounts/password-reset/").status_code == 200
    sent = client.post("/accounts/password-reset/", {"email": "ann@example.com"})
    assert sent.status_code == 302
    assert "Check your email" in client.get(sent["Location"]).content.decode()
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject == "Reset your FindMe password"
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)

    form = client.get(link, follow=True)
    assert "Choose a new password" in form.content.decode()
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "another-long-passphrase", "new_password2": "another-long-passphrase"},
    )
    assert done.status_code == 302
    assert "Your password is changed" in client.get(done["Location"]).content.decode()
    assert Client().login(username="ann", password="another-long-passphrase")


def test_home_sends_visitors_to_log_in_and_members_to_their_photos(client, attendee):
    assert client.get("/")["Location"] == "/accounts/login/"
    client.force_login(attendee)
    assert client.get("/")["Location"] == "/my/"
