"""Accounts: one account per email address in any case, API tokens that expire, and tokens
revoked by a password change or reset."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.forms import PasswordChangeForm
from django.core import mail
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.services import user_signup, user_token
from core.errors import ApplicationError
from tests.photos.test_ingest_api import assert_error

pytestmark = pytest.mark.django_db


def _me(key: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/me/")


# --- email unique in any case --------------------------------------------------------------------
def test_api_signup_with_a_used_address_in_another_case_is_taken(django_user_model):
    django_user_model.objects.create_user(username="ann", email="Ann@Example.com", password="x")
    answer = APIClient().post(
        "/api/auth/signup/",
        {"username": "zoe", "email": "ann@example.COM", "password": "correct horse battery"},
        format="json",
    )
    error = assert_error(answer, 400, "invalid")
    assert error["detail"] == {"email": ["This email address is taken."]}
    # Nothing about whose address it is.
    assert "ann" not in answer.content.decode().lower().replace("email address", "")
    assert django_user_model.objects.count() == 1


def test_signup_page_with_a_used_address_is_taken(client, django_user_model):
    django_user_model.objects.create_user(username="ann", email="ann@example.com", password="x")
    page = client.post(
        "/accounts/signup/",
        {
            "username": "zoe",
            "email": "ANN@example.com",
            "password1": "another-long-passphrase",
            "password2": "another-long-passphrase",
        },
    )
    assert page.status_code == 200
    assert "A user with that email address already exists." in page.content.decode()
    assert django_user_model.objects.count() == 1


def test_database_refuses_a_second_account_with_the_address_in_another_case(django_user_model):
    django_user_model.objects.create_user(username="ann", email="ann@example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        django_user_model.objects.create_user(username="bob", email="ANN@EXAMPLE.COM")


def test_accounts_without_an_address_may_be_many(django_user_model):
    django_user_model.objects.create_user(username="staff1")
    django_user_model.objects.create_user(username="staff2")
    assert django_user_model.objects.filter(email="").count() == 2


def test_signup_that_loses_the_race_for_an_address_is_told_it_is_taken(django_user_model):
    # The serializer's check passed for both; the constraint decides, and the answer says why.
    user_signup(username="ann", email="ann@example.com", password="correct horse battery")
    with pytest.raises(ApplicationError) as raised:
        user_signup(username="zoe", email="Ann@example.com", password="correct horse battery")
    assert raised.value.detail == {"email": ["A user with that email address already exists."]}
    assert django_user_model.objects.count() == 1


# --- tokens expire ----------------------------------------------------------------------------------
def test_a_token_older_than_the_ttl_answers_401(settings, attendee):
    settings.TOKEN_TTL_DAYS = 30
    token = Token.objects.create(user=attendee)
    assert _me(token.key).status_code == 200
    Token.objects.filter(pk=token.pk).update(created=timezone.now() - timedelta(days=31))
    answer = _me(token.key)
    error = assert_error(answer, 401, "authentication_failed")
    assert "expired" in error["detail"]["reason"]
    assert answer["WWW-Authenticate"] == "Token"


def test_a_ttl_of_zero_keeps_tokens(settings, attendee):
    settings.TOKEN_TTL_DAYS = 0
    token = Token.objects.create(user=attendee)
    Token.objects.filter(pk=token.pk).update(created=timezone.now() - timedelta(days=3650))
    assert _me(token.key).status_code == 200


def test_asking_again_replaces_an_expired_token(settings, attendee):
    settings.TOKEN_TTL_DAYS = 30
    old = Token.objects.create(user=attendee)
    Token.objects.filter(pk=old.pk).update(created=timezone.now() - timedelta(days=31))
    answer = APIClient().post(
        "/api/auth/token/", {"username": "ann", "password": "ann-pass-1234"}, format="json"
    )
    fresh = answer.json()["token"]
    assert fresh != old.key
    assert _me(fresh).status_code == 200
    assert _me(old.key).status_code == 401


def test_asking_again_keeps_a_live_token(attendee):
    assert user_token(user=attendee) == user_token(user=attendee)


# --- a new password revokes the tokens ----------------------------------------------------------
def test_a_password_change_revokes_the_tokens(attendee):
    key = user_token(user=attendee)
    form = PasswordChangeForm(
        attendee,
        {
            "old_password": "ann-pass-1234",
            "new_password1": "another-long-passphrase",
            "new_password2": "another-long-passphrase",
        },
    )
    assert form.is_valid(), form.errors
    form.save()
    assert_error(_me(key), 401, "authentication_failed")
    assert not Token.objects.filter(user=attendee).exists()


def test_a_password_reset_revokes_the_tokens(attendee):
    attendee.email = "ann@example.com"
    attendee.save()
    key = user_token(user=attendee)
    client = Client()
    client.post("/accounts/password-reset/", {"email": "ann@example.com"})
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    form = client.get(link, follow=True)
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "another-long-passphrase", "new_password2": "another-long-passphrase"},
    )
    assert done.status_code == 302
    assert _me(key).status_code == 401


def test_saving_an_account_without_a_new_password_keeps_the_tokens(attendee):
    key = user_token(user=attendee)
    attendee.first_name = "Ann"
    attendee.save()
    assert _me(key).status_code == 200
