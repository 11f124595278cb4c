from django.urls import path

from . import api

urlpatterns = [
    path("me/selfie/", api.SelfieApi.as_view(), name="api-selfie"),
    path("me/face-data/", api.FaceDataApi.as_view(), name="api-face-data"),
]
