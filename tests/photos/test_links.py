"""photos.links: a URL reversed once per page must equal the URL reversed per photo."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from django.urls import clear_script_prefix, reverse, set_script_prefix

from photos.links import photo_url_maker
from photos.views import TILE_URLS

IDS = [1, 42, 987654320, 10**15]


@pytest.mark.parametrize("name", sorted(TILE_URLS.values()))
def test_made_urls_equal_reversed_ones_relative_and_absolute(name, settings):
    settings.ALLOWED_HOSTS = ["photos.example"]
    request = RequestFactory().get("/api/my-photos/", secure=True, HTTP_HOST="photos.example:8443")
    relative, absolute = photo_url_maker(name), photo_url_maker(name, request=request)
    for photo_id in IDS:
        path = reverse(name, kwargs={"photo_id": photo_id})
        assert relative(photo_id) == path
        assert absolute(photo_id) == request.build_absolute_uri(path)
    assert absolute(7).startswith("https://photos.example:8443/")


def test_made_urls_keep_the_script_prefix_of_a_subpath_deployment():
    set_script_prefix("/findme/")
    try:
        make = photo_url_maker("photo-thumb")
        assert make(5) == reverse("photo-thumb", kwargs={"photo_id": 5})
        assert make(5).startswith("/findme/")
    finally:
        clear_script_prefix()
