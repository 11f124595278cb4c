from django.urls import path

from . import views

urlpatterns = [
    path("me/selfie/", views.selfie_page, name="selfie"),
    path("me/selfie/photo.jpg", views.selfie_photo, name="selfie-photo"),
    path("me/face-data/delete/", views.face_data_delete_page, name="face-data-delete"),
]
