from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("e/<slug:slug>/join/", views.event_join_page, name="event-join"),
    path("my/", views.my_photos_page, name="my-photos"),
]
