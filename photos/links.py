"""Photo URLs in bulk: a page of photos needs the same few URLs, differing only by the id."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest
from django.urls import reverse

# No photo has this id: it marks where the id goes in a reversed URL.
_STAND_IN = "987654320123456789"


def photo_url_maker(name: str, *, request: HttpRequest | None = None) -> Callable[[int], str]:
    """``reverse(name, kwargs={"photo_id": id})`` as a function of the id, absolute when a
    request is given (``request.build_absolute_uri``), reversed once.

    A page of 50 to 60 photos otherwise reverses 150 to 300 URLs that differ only by the id:
    about half the time of rendering the API's page, and 40% of the HTML gallery's.
    """
    head, tail = reverse(name, kwargs={"photo_id": int(_STAND_IN)}).split(_STAND_IN, 1)
    if request is not None:
        # The path is absolute and clean, so this is the scheme and host put in front.
        head = request.build_absolute_uri(head)
    return lambda photo_id: f"{head}{photo_id}{tail}"
