"""The attendee's side of the API: who am I, my photos, the image bytes, not-me and its undo,
the zip of them all or of a selection."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import quote, urlencode

from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseNotModified,
    QueryDict,
    StreamingHttpResponse,
)
from django.urls import reverse
from django.utils.cache import get_conditional_response, patch_vary_headers
from django.utils.http import content_disposition_header, quote_etag
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import selfie_get
from core.errors import ApplicationError, NotFound
from core.imaging import sniff_type
from core.openapi import AUTHED, COMMON, IMAGE_TYPES, NOT_MODIFIED, binary, errors, fields
from events.models import Event
from faces import services as faces_services

from . import privacy, selectors
from .gallery import my_photos_json, my_photos_not_modified, zip_stream
from .links import photo_url_maker
from .models import Photo
from .naming import photo_download_name, zip_download_name
from .serializers import PhotoOutputSerializer

logger = logging.getLogger(__name__)

IMMUTABLE = "private, max-age=31536000, immutable"
REVALIDATE = "private, no-cache"


class _AnswerWhateverAccepted(BaseContentNegotiation):
    """Bytes and zips are what they are, whatever ``Accept`` says (an ``<img>`` asks for
    ``image/webp``); errors are still rendered as JSON."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class MeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            200: fields(
                "Me",
                id=serializers.IntegerField(),
                username=serializers.CharField(),
                is_staff=serializers.BooleanField(),
                has_selfie=serializers.BooleanField(),
                selfie_status=serializers.CharField(allow_null=True),
                consent_at=serializers.DateTimeField(allow_null=True),
                events=serializers.ListField(child=serializers.SlugField()),
            ),
            **errors(*AUTHED),
        }
    )
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
                "events": selectors.event_slugs_for_member(user=user),
            }
        )


class GalleryPhotoSerializer(PhotoOutputSerializer):
    """PhotoOutputSerializer's exact output, with each URL reversed once per page
    (photos.links.photo_url_maker) instead of once per row."""

    def _url(self, name: str, photo: Photo) -> str:
        # One serializer instance renders every row of a page (many=True): remember per instance.
        makers = self.__dict__.setdefault("_url_makers", {})
        make = makers.get(name)
        if make is None:
            make = makers[name] = photo_url_maker(name, request=self.context.get("request"))
        return make(photo.pk)


class MyPhotosApi(GenericAPIView):
    """The photos the caller was matched in, newest first, paginated.

    The answer is cached per user as rendered JSON (photos.gallery.my_photos_json): a hit is
    one cache read and no serialising.
    """

    permission_classes = [IsAuthenticated]
    serializer_class = GalleryPhotoSerializer

    def _event(self, request: Request) -> Event | None:
        slug = request.query_params.get("event")
        if not slug:
            return None
        return selectors.event_get_for_member(slug=slug, user=request.user)

    @extend_schema(
        parameters=[OpenApiParameter("event", str, required=False)],
        responses={
            200: GalleryPhotoSerializer(many=True),
            304: NOT_MODIFIED,
            **errors(*AUTHED, 404, 412),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        # Everything the rendered bytes depend on: the query (next/previous links repeat it
        # whole), and scheme and host, which the absolute URLs carry.
        variant = f"{request.scheme}://{request.get_host()}{request.get_full_path()}"
        # A poll of an unchanged gallery: 304 from two small cache entries, before anything else
        # is read. An If-Match beside it takes the full path, where it is weighed first.
        if_none_match = request.META.get("HTTP_IF_NONE_MATCH")
        if if_none_match and "HTTP_IF_MATCH" not in request.META:
            etag = my_photos_not_modified(
                user_id=request.user.pk, variant=variant, if_none_match=if_none_match
            )
            if etag is not None:
                response = HttpResponseNotModified()
                response["ETag"] = etag
                response["Cache-Control"] = REVALIDATE
                return response

        def build() -> bytes:
            # Inside the miss: the event check is cached with the page it allowed.
            qs = selectors.photo_list_for_user(user=request.user, event=self._event(request))
            page = self.paginate_queryset(qs)
            data = self.get_paginated_response(self.get_serializer(page, many=True).data).data
            return JSONRenderer().render(data)

        page = my_photos_json(user_id=request.user.pk, variant=variant, build=build)
        return _conditional_get(
            request,
            etag=page.etag,
            cache_control=REVALIDATE,
            answer=lambda: HttpResponse(page.body, content_type="application/json"),
        )


class GallerySnapshot(NamedTuple):
    """What ``GET /api/my-photos/`` answered the gallery page's user as the page was built."""

    url: str  # the path and query the page polls
    etag: str
    count: int
    ids: list[int]  # of the photos in that answer (its first page)


def my_photos_snapshot(request: HttpRequest, *, event_slug: str | None) -> GallerySnapshot | None:
    """``GET /api/my-photos/`` (``?event=`` when the page shows one event) for the user of the
    page ``request``, answered by MyPhotosApi itself, as a request of its own to that URL would
    be: same user, scheme and host, so the same cached bytes and the same ETag.

    The gallery page embeds the ETag, so that its first poll is a 304 unless the gallery changed
    since, and the ids, so that the photos of a later answer that the page never had can be told
    apart. Call it before reading the page's own photos: what the page then shows is at least
    as new as the ETag, never older. None if the API refuses (the page then polls without an
    ETag, and its first answer is a 200).
    """
    path = reverse("api-my-photos")
    query = urlencode({"event": event_slug}) if event_slug else ""
    environ = {
        key: value
        for key, value in request.META.items()
        if key not in ("HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH", "HTTP_IF_MODIFIED_SINCE")
    }
    environ.update(
        PATH_INFO=path, QUERY_STRING=query, REQUEST_METHOD="GET", HTTP_ACCEPT="application/json"
    )
    sub = copy.copy(request)
    sub.environ = sub.META = environ
    sub.path = sub.path_info = path
    sub.method = "GET"
    sub.GET = QueryDict(query)
    sub.__dict__.pop("headers", None)  # a cached view of the page's own META
    response = MyPhotosApi.as_view()(sub)
    if hasattr(response, "render"):  # an error is a DRF Response, rendered here
        response.render()
    if response.status_code != 200:
        logger.warning("gallery snapshot for user %s: %s", request.user.pk, response.status_code)
        return None
    data = json.loads(response.content)
    return GallerySnapshot(
        url=f"{path}?{query}" if query else path,
        etag=response["ETag"],
        count=data["count"],
        ids=[row["id"] for row in data["results"]],
    )


class _PhotoBytesApi(APIView):
    """Image bytes for whoever may see the photo; 404 for everyone else, anonymous included."""

    permission_classes: list = []
    content_negotiation_class = _AnswerWhateverAccepted
    variant = ""
    binary_field: str | None = None

    @extend_schema(
        responses={
            **binary("the image", IMAGE_TYPES),
            304: NOT_MODIFIED,
            **errors(*COMMON, 401, 404, 412),
        }
    )
    def get(self, request: Request, photo_id: int) -> HttpResponse:
        # Only the one binary column this answer needs (none for the original, read from storage).
        fields = (self.binary_field,) if self.binary_field else ()
        photo = selectors.photo_get_visible(photo_id=photo_id, user=request.user, fields=fields)
        response = _conditional_get(
            request,
            etag=quote_etag(f"{photo.sha256}-{self.served_variant(photo)}"),
            cache_control=IMMUTABLE,
            answer=lambda: self.body(photo),
        )
        patch_vary_headers(response, ("Cookie", "Authorization"))
        return response

    def served_variant(self, photo: Photo) -> str:
        return self.variant

    def body(self, photo: Photo) -> HttpResponse:
        # A photo not processed yet has no renditions row.
        data = getattr(getattr(photo, "rendition", None), self.binary_field, None)
        if not data:
            raise NotFound("This photo has not been processed yet; try again in a moment.")
        data = bytes(data)
        return HttpResponse(data, content_type=sniff_type(data[:32]) or "application/octet-stream")


def _conditional_get(
    request: Request, *, etag: str, cache_control: str, answer: Callable[[], HttpResponse]
) -> HttpResponse:
    """``answer()`` with its ETag and Cache-Control, unless Django's reading of the conditional
    headers settles it first: 304 (with the same two headers) when If-None-Match holds the
    ETag, weakly compared, or 412 when an If-Match does not. ``answer`` is not called then, so
    a 304 reads no file."""
    response = get_conditional_response(request, etag=etag)
    if response is None:
        response = answer()
    if response.status_code != 412:  # a refused precondition must not be cached for a year
        response["ETag"] = etag
        # Set whole, not patched: a fresh response has no Cache-Control to merge with, and
        # parsing one costs a gallery hit about 10 us.
        response["Cache-Control"] = cache_control
    return response


class PhotoThumbApi(_PhotoBytesApi):
    variant = "thumb"
    binary_field = "thumb"


class PhotoPreviewApi(_PhotoBytesApi):
    variant = "preview"
    binary_field = "preview"


def _accel_redirect_serves(photo: Photo) -> bool:
    return settings.SERVE_ORIGINALS_VIA_ACCEL_REDIRECT and isinstance(
        photo.original.storage, FileSystemStorage
    )


class PhotoOriginalApi(_PhotoBytesApi):
    variant = "original"

    def served_variant(self, photo: Photo) -> str:
        # Served with location removed, the bytes are not the stored ones: nor is their ETag.
        if photo.event.keep_location:
            return self.variant
        return f"{self.variant}-{privacy.ETAG_SUFFIX}"

    def body(self, photo: Photo) -> HttpResponse:
        try:
            source = photo.original.open("rb")
        except OSError:
            logger.exception("original of photo %s cannot be read", photo.pk)
            raise NotFound("The original file of this photo is missing.") from None
        filename = photo_download_name(photo)
        if photo.event.keep_location and _accel_redirect_serves(photo):
            # Authorised: nginx sends the stored file (deploy/nginx/findme-app.conf).
            source.close()
            response = HttpResponse(content_type=photo.content_type)
            response["X-Accel-Redirect"] = settings.ORIGINALS_ACCEL_PREFIX + quote(
                photo.original.name
            )
        elif photo.event.keep_location:
            response = FileResponse(source, content_type=photo.content_type)
        else:
            # The stored file still holds the location, so it is never handed to a server that
            # sends files by path (X-Accel-Redirect): only these rewritten bytes may go out.
            try:
                served = privacy.original_pieces(
                    source, photo.content_type, size=photo.size, keep_location=False
                )
            except privacy.LocationNotRemovable:
                logger.exception("original of photo %s: location cannot be removed", photo.pk)
                raise NotFound(
                    "This original cannot be served without its location; ask the event's staff."
                ) from None
            response = StreamingHttpResponse(served.pieces, content_type=photo.content_type)
            if served.length is not None:
                response["Content-Length"] = served.length
        response["Content-Disposition"] = content_disposition_header(True, filename)
        return response


class NotMeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: None, **errors(*AUTHED, 404)})
    def post(self, request: Request, photo_id: int) -> HttpResponse:
        if not faces_services.match_reject(user_id=request.user.pk, photo_id=photo_id):
            raise NotFound("You are not matched in this photo.")
        return HttpResponse(status=204)


class NotMeUndoApi(APIView):
    """Undo "not me", shortly after it (faces.services.match_restore)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={
            204: None,
            **errors(
                *AUTHED,
                404,
                e404='Nothing to undo: no recent "not me" of the caller\'s on this photo.',
            ),
        },
    )
    def post(self, request: Request, photo_id: int) -> HttpResponse:
        if not faces_services.match_restore(user_id=request.user.pk, photo_id=photo_id):
            raise NotFound(
                'There is no recent "Not me" of yours on this photo to undo: it is final '
                "a few minutes after it, or once the photo was scanned again."
            )
        return HttpResponse(status=204)


class MyPhotosZipApi(MyPhotosApi):
    content_negotiation_class = _AnswerWhateverAccepted

    @extend_schema(
        parameters=[OpenApiParameter("event", str, required=False)],
        responses={
            **binary("a zip of the originals", ("application/zip",)),
            **errors(*AUTHED, 404),
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        event = self._event(request)
        # A server-side cursor on PostgreSQL, chunks on SQLite: rows never all in memory.
        photos = selectors.photo_list_for_user(user=request.user, event=event).iterator(
            chunk_size=100
        )
        events = [event] if event else selectors.event_list_for_member(user=request.user)
        return _zip_response(photos, name=zip_download_name(events))


def _zip_response(photos, *, name: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(zip_stream(photos), content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(True, name)
    response["Cache-Control"] = "private, no-store"
    return response


SELECTION_MAX = 500  # the largest page of /api/my-photos/


def _ids_param(request: Request) -> set[int]:
    """``ids`` as the selection form sends it (``ids=1&ids=2``) or in one (``ids=1,2``)."""
    raw = [part for value in request.query_params.getlist("ids") for part in value.split(",")]
    raw = [part.strip() for part in raw if part.strip()]

    def refuse(message: str) -> ApplicationError:
        return ApplicationError(message, code="invalid", detail={"ids": [message]})

    if not raw:
        raise refuse("Choose at least one photo: ids is a list of photo ids.")
    if not all(part.isascii() and part.isdigit() and len(part) <= 18 for part in raw):
        raise refuse("Photo ids are whole numbers, such as ids=12&ids=15 or ids=12,15.")
    ids = {int(part) for part in raw}
    if len(ids) > SELECTION_MAX:
        raise refuse(f"Choose at most {SELECTION_MAX} photos at a time.")
    return ids


class MyPhotosSelectionZipApi(APIView):
    """A zip of some of the caller's photos, chosen by id, named as the whole gallery's is.

    All or nothing: an id that is not one of the caller's photos (someone else's, one they said
    "not me" to, one that does not exist) makes it 404, without saying which, so nobody learns
    by trying whether a photo exists. Staff get their own photos here too, like the other zip.
    """

    permission_classes = [IsAuthenticated]
    content_negotiation_class = _AnswerWhateverAccepted

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "ids",
                int,
                many=True,
                required=True,
                description=f"Photo ids, repeated or comma-separated; at most {SELECTION_MAX}.",
            )
        ],
        responses={
            **binary("a zip of the chosen originals", ("application/zip",)),
            **errors(*AUTHED, 404, e404="One of the ids is not a photo of the caller's."),
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        ids = _ids_param(request)
        # Metadata of at most SELECTION_MAX rows, never their bytes; the files are read one by
        # one while streaming.
        photos = list(selectors.photo_list_for_user_by_ids(user=request.user, ids=ids))
        if len(photos) != len(ids):
            raise NotFound("Some of these photos are not in your gallery (any more).")
        return _zip_response(photos, name=zip_download_name(p.event for p in photos))
