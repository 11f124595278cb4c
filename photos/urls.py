from django.urls import path

from . import views, views_event

urlpatterns = [
    path("", views.home, name="home"),
    path("e/<slug:slug>/", views_event.event_landing, name="event-landing"),
    path("e/<slug:slug>/guest/", views_event.event_guest_start, name="event-guest"),
    path(
        "e/<slug:slug>/files/<str:name>",
        views_event.event_branding_file,
        name="event-branding-file",
    ),
    path("e/<slug:slug>/join/", views.event_join_page, name="event-join"),
    path("e/<slug:slug>/qr/", views.event_qr_page, name="event-qr"),
    path("e/<slug:slug>/qr.svg", views.event_qr_svg, name="event-qr-svg"),
    path("my/", views.my_photos_page, name="my-photos"),
    path("my/photos/<int:photo_id>/not-me/", views.not_me, name="not-me"),
    path("my/photos/<int:photo_id>/not-me/undo/", views.not_me_undo, name="not-me-undo"),
]
