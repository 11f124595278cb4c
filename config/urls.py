from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from photos.admin_views import face_crop, queue_dashboard

api_patterns = [
    path("", include("accounts.urls_api")),
    path("", include("faces.urls_api")),
    path("", include("photos.urls_api")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its script as a file: the Content-Security-Policy forbids inline.
    # Swagger UI still sets inline styles as it renders: allowed on this page alone.
    path(
        "docs/",
        csp_update({"style-src": ["'unsafe-inline'"]})(
            SpectacularSwaggerSplitView.as_view(url_name="api-schema")
        ),
        name="api-docs",
    ),
]

urlpatterns = [
    path("admin/queue/", admin.site.admin_view(queue_dashboard), name="admin-queue"),
    path("admin/faces/crop/<int:face_id>.jpg", admin.site.admin_view(face_crop), name="face-crop"),
    path("admin/", admin.site.urls),
    path("api/", include(api_patterns)),
    path("", include("photos.urls")),
    path("", include("faces.urls")),
    path("", include("accounts.urls")),
    path("", include("core.urls")),
]

handler400 = "core.views.bad_request"
handler403 = "core.views.permission_denied"
handler404 = "core.views.not_found"
handler500 = "core.views.server_error"
