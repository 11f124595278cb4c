from django.urls import path

from . import api, api_gallery, api_staff

urlpatterns = [
    path("events/", api.EventListCreateApi.as_view(), name="api-events"),
    path("events/<slug:slug>/", api.EventDetailApi.as_view(), name="api-event"),
    path("events/<slug:slug>/photos/", api.PhotoListUploadApi.as_view(), name="api-event-photos"),
    path("events/<slug:slug>/photos/check/", api.PhotoCheckApi.as_view(), name="api-photos-check"),
    path("events/<slug:slug>/join/", api.EventJoinApi.as_view(), name="api-event-join"),
    path("events/<slug:slug>/guest/", api.EventGuestApi.as_view(), name="api-event-guest"),
    path("photos/<int:photo_id>/status/", api.PhotoStatusApi.as_view(), name="api-photo-status"),
    path("photos/<int:photo_id>/thumb/", api_gallery.PhotoThumbApi.as_view(), name="photo-thumb"),
    path(
        "photos/<int:photo_id>/preview/",
        api_gallery.PhotoPreviewApi.as_view(),
        name="photo-preview",
    ),
    path(
        "photos/<int:photo_id>/original/",
        api_gallery.PhotoOriginalApi.as_view(),
        name="photo-original",
    ),
    path("photos/<int:photo_id>/not-me/", api_gallery.NotMeApi.as_view(), name="api-photo-not-me"),
    path(
        "photos/<int:photo_id>/not-me/undo/",
        api_gallery.NotMeUndoApi.as_view(),
        name="api-photo-not-me-undo",
    ),
    path("me/", api_gallery.MeApi.as_view(), name="api-me"),
    path("my-photos/", api_gallery.MyPhotosApi.as_view(), name="api-my-photos"),
    path("my-photos/download.zip", api_gallery.MyPhotosZipApi.as_view(), name="api-my-photos-zip"),
    path(
        "my-photos/selection.zip",
        api_gallery.MyPhotosSelectionZipApi.as_view(),
        name="api-my-photos-selection-zip",
    ),
    path("admin/queue/stats/", api_staff.QueueStatsApi.as_view(), name="api-queue-stats"),
    path("health/", api_staff.HealthApi.as_view(), name="api-health"),
]
