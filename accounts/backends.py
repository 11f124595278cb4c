"""The login limit where every password is checked: Django's ModelBackend behind the "login"
rate limit, so the API token, the login page and the admin's login are all held by one count."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from .models import User
from .ratelimits import limit_check, limit_hit

# Set on the request refused for the limit: the seconds to wait, for the view's 429.
RETRY_AFTER_ATTR = "login_retry_after"


class RateLimitedModelBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        if request is None:
            # Code that logs in without a request (the test client's login(), a shell) is no
            # client to count.
            return super().authenticate(request, username, password, **kwargs)
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        account = username or ""
        wait = limit_check(request, scope="login", account=account)
        if wait is not None:
            # Past the limit even the right password is refused, unchecked: guessing stops, and
            # so does the CPU each check costs. PermissionDenied stops authenticate() from
            # asking another backend.
            setattr(request, RETRY_AFTER_ATTR, wait)
            raise PermissionDenied
        user = super().authenticate(request, username, password, **kwargs)
        if user is None:
            limit_hit(request, scope="login", account=account)
        return user


def login_retry_after(request: HttpRequest) -> int | None:
    """The seconds to wait if this request's login was refused for the limit, else None."""
    return getattr(request, RETRY_AFTER_ATTR, None)
