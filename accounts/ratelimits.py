"""Rate limits per client IP and per account, counted in the shared cache.

The counting is django-ratelimit's (``django_ratelimit.core.get_usage``): a fixed window per key,
``cache.add`` then ``cache.incr``, which Redis does atomically, so one limit holds across every
process and machine. The scopes and their rates are ``settings.RATE_LIMITS``.

Two ways to use a scope:

- count every attempt (signup, selfie, password reset, guest): ``limit_hit`` before the work;
- count failures only (login, join with a wrong code): ``limit_check`` before the work, then
  ``limit_hit`` when it failed. A client past the limit is refused before the work, so the right
  password is refused too until the window ends: that is what stops guessing.

Both answer the seconds to wait (for ``Retry-After``), or None when the request may go on.
The guest endpoint (``POST /api/events/{slug}/guest/``) uses scope ``"guest"`` with the event's
slug as its account: ``raise_if_limited(limit_hit(request, scope="guest", account=slug))``.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_ratelimit.core import get_usage
from rest_framework.exceptions import Throttled

from core.errors import outage_of

logger = logging.getLogger(__name__)

SCOPES = ("login", "signup", "join", "guest", "selfie", "password_reset")


def client_ip(request: HttpRequest) -> str:
    """The client's address: the proxy's header (settings.RATELIMIT_CLIENT_IP_META) when the
    request came through the proxy, else the peer's. django-ratelimit then groups IPv6 by /64."""
    header = settings.RATELIMIT_CLIENT_IP_META
    return (request.META.get(header, "") if header else "").strip() or request.META["REMOTE_ADDR"]


def _rates(scope: str) -> dict[str, str | None]:
    if scope not in SCOPES:
        raise ValueError(f"unknown rate-limit scope {scope!r}")
    return settings.RATE_LIMITS[scope]


def _usages(request: HttpRequest, *, scope: str, account: str, increment: bool) -> list[dict]:
    account_key = account.strip().lower()
    usages = []
    for by, rate in _rates(scope).items():
        if rate is None:
            continue
        if by == "ip":
            key: object = "ip"
        else:
            # An empty account (a form sent without a username) is one shared bucket per scope;
            # the IP limit still applies to it.
            key = lambda _group, _request, value=account_key: value  # noqa: E731
        try:
            usage = get_usage(
                request,
                group=f"findme.{scope}.{by}",
                key=key,
                rate=rate,
                increment=increment,
            )
        except Exception as exc:
            # The database cache down: the limit lapses rather than the page failing. A bug
            # (anything that is not an outage) still raises.
            if outage_of(exc) is None:
                raise
            logger.warning("rate limit %s.%s not counted, the cache is down: %s", scope, by, exc)
            continue
        if usage is not None:
            usages.append(usage)
    return usages


def _wait(usages: list[dict], *, over: bool) -> int | None:
    """Seconds until every exceeded count's window ends, or None when none is exceeded.

    ``over`` is True after counting this request (more than the limit is too many) and False
    when only looking (the limit already reached leaves no room for this one)."""
    # django-ratelimit's window still holds at its last second (time_left 0): the next
    # window starts one second after it.
    waits = [
        max(1, usage["time_left"] + 1)
        for usage in usages
        if (usage["count"] > usage["limit"] if over else usage["count"] >= usage["limit"])
    ]
    return max(waits) if waits else None


def limit_check(request: HttpRequest, *, scope: str, account: str) -> int | None:
    """Without counting: the seconds to wait when this IP or account has used up ``scope``."""
    return _wait(_usages(request, scope=scope, account=account, increment=False), over=False)


def limit_hit(request: HttpRequest, *, scope: str, account: str) -> int | None:
    """Count one attempt for this IP and this account; the seconds to wait if it was one too
    many."""
    return _wait(_usages(request, scope=scope, account=account, increment=True), over=True)


def raise_if_limited(wait: int | None) -> None:
    """For API views: past the limit, DRF's Throttled, which core.errors answers as 429
    ``rate_limited`` with ``Retry-After``."""
    if wait is not None:
        raise Throttled(wait=wait)


def limited_page(request: HttpRequest, wait: int) -> HttpResponse:
    """For pages: a readable 429 that says how long to wait."""
    minutes = (wait + 59) // 60
    response = render(
        request,
        "429.html",
        {"wait_seconds": wait, "wait_minutes": minutes},
        status=429,
    )
    response["Retry-After"] = str(wait)
    return response
