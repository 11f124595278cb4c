"""The attendee's side of the API: who am I, my photos, the image bytes, not-me, the zip."""

from __future__ import annotations

from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import selfie_get
from core.errors import NotFound
from faces import services as faces_services

from . import selectors
from .gallery import my_photos_cached, zip_stream
from .serializers import PhotoOutputSerializer

IMMUTABLE = "private, max-age=31536000, immutable"


class MeApi(APIView):
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        user = request.user
        selfie = selfie_get(user_id=user.pk)
        return Response(
            {
                "id": user.pk,
                "username": user.username,
                "is_staff": user.is_staff,
                "has_selfie": selfie is not None,
                "selfie_status": selfie.status if selfie else None,
                "consent_at": selfie.consent_at if selfie else None,
                "events": list(
                    user.memberships.order_by("joined_at").values_list("event__slug", flat=True)
                ),
            }
        )


class MyPhotosApi(GenericAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = PhotoOutputSerializer

    def _event(self, request: Request):
        slug = request.query_params.get("event")
        if not slug:
            return None
        return selectors.event_get_for_member(slug=slug, user=request.user)

    def get(self, request: Request) -> Response:
        event = self._event(request)
        variant = "|".join(
            [
                event.slug if event else "-",
                request.query_params.get("page", "1"),
                request.query_params.get("page_size", ""),
                request.get_host(),
            ]
        )

        def build() -> dict:
            qs = selectors.photo_list_for_user(user=request.user, event=event)
            page = self.paginate_queryset(qs)
            return self.get_paginated_response(self.get_serializer(page, many=True).data).data

        return Response(my_photos_cached(user_id=request.user.pk, variant=variant, build=build))


class _PhotoBytesApi(APIView):
    """Image bytes for whoever may see the photo; 404 for everyone else."""

    permission_classes: list = []  # anonymous callers get 404, like any other stranger
    variant = ""

    def get(self, request: Request, photo_id: int) -> HttpResponse:
        field = () if self.variant == "original" else (self.variant,)
        photo = selectors.photo_get_visible(photo_id=photo_id, user=request.user, fields=field)
        etag = f'"{photo.sha256}-{self.variant}"'
        if etag in _if_none_match(request):
            response = HttpResponse(status=304)
        else:
            response = self.body(photo)
        response["ETag"] = etag
        response["Cache-Control"] = IMMUTABLE
        response["Vary"] = "Cookie, Authorization"
        return response


def _if_none_match(request: Request) -> set[str]:
    header = request.META.get("HTTP_IF_NONE_MATCH", "")
    return {part.strip().removeprefix("W/") for part in header.split(",") if part.strip()}


class PhotoThumbApi(_PhotoBytesApi):
    variant = "thumb"

    def body(self, photo) -> HttpResponse:
        if not photo.thumb:
            raise NotFound("This photo has not been processed yet.")
        return HttpResponse(bytes(photo.thumb), content_type="image/webp")


class PhotoPreviewApi(_PhotoBytesApi):
    variant = "preview"

    def body(self, photo) -> HttpResponse:
        if not photo.preview:
            raise NotFound("This photo has not been processed yet.")
        return HttpResponse(bytes(photo.preview), content_type="image/jpeg")


class PhotoOriginalApi(_PhotoBytesApi):
    variant = "original"

    def body(self, photo) -> HttpResponse:
        filename = photo.original_name or f"photo-{photo.pk}.{photo.extension}"
        response = FileResponse(photo.original.open("rb"), content_type=photo.content_type)
        response["Content-Disposition"] = content_disposition_header(True, filename)
        return response


class NotMeApi(APIView):
    permission_classes = [IsAuthenticated]

    def post(self, request: Request, photo_id: int) -> HttpResponse:
        if not faces_services.match_reject(user_id=request.user.pk, photo_id=photo_id):
            raise NotFound("You are not matched in this photo.")
        return HttpResponse(status=204)


class MyPhotosZipApi(MyPhotosApi):
    def get(self, request: Request) -> StreamingHttpResponse:
        event = self._event(request)
        photos = selectors.photo_list_for_user(user=request.user, event=event).iterator(
            chunk_size=200
        )
        name = f"findme-{event.slug if event else 'photos'}.zip"
        response = StreamingHttpResponse(zip_stream(photos), content_type="application/zip")
        response["Content-Disposition"] = content_disposition_header(True, name)
        response["Cache-Control"] = "private, no-store"
        return response
