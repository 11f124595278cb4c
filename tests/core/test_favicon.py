"""/favicon.ico, which browsers ask for on their own, leads to the site's icon."""

from __future__ import annotations

from tests.conftest import ROOT


def test_favicon_ico_redirects_to_the_svg_icon_that_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == "/static/favicon.svg"

    icon = client.get(response["Location"])
    assert icon.status_code == 200
    assert icon["Content-Type"] == "image/svg+xml"
    body = b"".join(icon.streaming_content) if icon.streaming else icon.content
    assert body == (ROOT / "static" / "favicon.svg").read_bytes()
