"""Site-wide addresses that belong to no app."""

from django.conf import settings
from django.urls import path
from django.views.generic import RedirectView

urlpatterns = [
    # Browsers, feed readers and crawlers ask for /favicon.ico whatever a page's <link rel="icon">
    # says; the icon itself is static/favicon.svg, served by whitenoise.
    path(
        "favicon.ico",
        RedirectView.as_view(url=f"{settings.STATIC_URL}favicon.svg", permanent=True),
        name="favicon",
    ),
]
