"""A guest's private gallery link, as an absolute URL."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse

from .models import User
from .services import guest_link_token


def gallery_link(request: HttpRequest, user: User) -> str:
    """The link that signs this user in on any device, without a password, and opens their
    gallery (accounts.views.gallery_link_open). It lasts settings.GUEST_LINK_DAYS, and a
    password change ends it."""
    token = guest_link_token(user=user)
    return request.build_absolute_uri(reverse("gallery-link", kwargs={"token": token}))
