"""Events, upload and processing status: staff endpoints, plus joining an event."""

from __future__ import annotations

import time

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import AllowAny, IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.links import gallery_link
from accounts.ratelimits import limit_check, limit_hit, raise_if_limited
from core.errors import ApplicationError, NotFound
from core.openapi import AUTHED, COMMON, STAFF, errors, fields
from core.uploads import upload_size_check

from . import selectors, services
from .models import Photo
from .serializers import EventOutputSerializer, PhotoOutputSerializer


class EventListCreateApi(GenericAPIView):
    permission_classes = [IsAdminUser]
    serializer_class = EventOutputSerializer

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        slug = serializers.SlugField(max_length=70, required=False, allow_blank=True)

    @extend_schema(responses={200: EventOutputSerializer(many=True), **errors(*STAFF, 404)})
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(selectors.event_list())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        request=InputSerializer, responses={201: EventOutputSerializer, **errors(*STAFF)}
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        event = services.event_create(
            name=data.validated_data["name"],
            slug=data.validated_data.get("slug") or None,
            created_by=request.user,
        )
        return Response(self.get_serializer(event).data, status=201)


class EventDetailApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(
        responses={
            200: fields(
                "EventDetail",
                slug=serializers.SlugField(),
                name=serializers.CharField(),
                join_code=serializers.CharField(),
                join_url=serializers.URLField(),
                created_at=serializers.DateTimeField(),
                photos=serializers.DictField(child=serializers.IntegerField()),
                members=serializers.IntegerField(),
            ),
            **errors(*STAFF, 404),
        }
    )
    def get(self, request: Request, slug: str) -> Response:
        event = selectors.event_get(slug=slug)
        body = EventOutputSerializer(event, context={"request": request}).data
        body["photos"] = selectors.event_photo_counts(event=event)
        body["members"] = selectors.event_member_count(event=event)
        return Response(body)


class PhotoListUploadApi(GenericAPIView):
    permission_classes = [IsAdminUser]
    serializer_class = PhotoOutputSerializer

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(allow_empty_file=True, use_url=False)
        sha256 = serializers.CharField(required=False, allow_blank=True, max_length=200)

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=Photo.Status.values, required=False),
        ],
        responses={200: PhotoOutputSerializer(many=True), **errors(*STAFF, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        event = selectors.event_get(slug=slug)
        status = request.query_params.get("status") or None
        if status and status not in Photo.Status.values:
            raise ApplicationError(
                f"status must be one of {', '.join(Photo.Status.values)}.",
                code="invalid",
                detail={"status": ["Unknown status."]},
            )
        page = self.paginate_queryset(selectors.photo_list_for_event(event=event, status=status))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={
            201: PhotoOutputSerializer,
            200: OpenApiResponse(PhotoOutputSerializer, description='"duplicate": true'),
            **errors(
                *STAFF,
                404,
                e400="invalid_image, unsupported_type, checksum_mismatch, image_too_large",
                e413="file_too_large",
                e503="queue_full or unavailable, with Retry-After",
            ),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        event = selectors.event_get(slug=slug)
        upload_size_check(request)  # by now the body has been received, hashed and spooled
        started = time.perf_counter()
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.photo_ingest(
            event=event,
            upload=data.validated_data["file"],
            uploaded_by=request.user,
            sha256=data.validated_data.get("sha256") or None,
        )
        body = self.get_serializer(result.photo).data
        body["duplicate"] = not result.created
        elapsed_ms = (time.perf_counter() - started) * 1000
        # The server's own time for this upload, without the body transfer (bench/upload.py).
        headers = {"Server-Timing": f"app;dur={elapsed_ms:.1f}"}
        return Response(body, status=201 if result.created else 200, headers=headers)


class PhotoCheckApi(APIView):
    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
        sha256 = serializers.ListField(
            child=serializers.RegexField(r"^[0-9a-fA-F]{64}$"), max_length=1000, allow_empty=True
        )

    @extend_schema(
        request=InputSerializer,
        responses={
            200: fields(
                "PhotoCheckOutput", existing=serializers.ListField(child=serializers.CharField())
            ),
            **errors(*STAFF, 404),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        event = selectors.event_get(slug=slug)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(
            {
                "existing": services.photos_existing(
                    event=event, hashes=data.validated_data["sha256"]
                )
            }
        )


class PhotoStatusApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            200: fields(
                "PhotoStatus",
                id=serializers.IntegerField(),
                status=serializers.ChoiceField(choices=Photo.Status.values),
                faces=serializers.IntegerField(allow_null=True),
                error=serializers.CharField(allow_null=True),
                attempts=serializers.IntegerField(),
            ),
            **errors(*AUTHED, 404),
        }
    )
    def get(self, request: Request, photo_id: int) -> Response:
        photo = selectors.photo_get_visible(photo_id=photo_id, user=request.user)
        return Response(
            {
                "id": photo.pk,
                "status": photo.status,
                "faces": photo.face_count,
                "error": photo.error or None,
                "attempts": photo.attempts,
            }
        )


class EventJoinApi(APIView):
    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        join_code = serializers.CharField(max_length=64)

    @extend_schema(
        request=InputSerializer,
        responses={
            200: fields("JoinOutput", event=serializers.SlugField()),
            **errors(*AUTHED, 404, 429, e404="not_found: a wrong slug or code"),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # Wrong codes are counted, per IP and per member, so codes cannot be guessed.
        account = str(request.user.pk)
        raise_if_limited(limit_check(request, scope="join", account=account))
        try:
            event = services.event_join(
                user=request.user, slug=slug, join_code=data.validated_data["join_code"]
            )
        except NotFound:
            limit_hit(request, scope="join", account=account)
            raise
        return Response({"event": event.slug})


class EventGuestApi(APIView):
    """A guest from the event's QR code: no password and no username, already a member."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        join_code = serializers.CharField(max_length=64)

    @extend_schema(
        request=InputSerializer,
        responses={
            201: fields(
                "GuestOutput",
                id=serializers.IntegerField(),
                token=serializers.CharField(),
                gallery_url=serializers.URLField(),
            ),
            **errors(*COMMON, 404, 429, e404="not_found: a wrong slug or code"),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        # Every guest made counts, per IP and per event; a wrong code counts as a join failure.
        raise_if_limited(limit_hit(request, scope="guest", account=slug))
        raise_if_limited(limit_check(request, scope="join", account=f"guest:{slug}"))
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            user, token, _ = services.event_guest_join(
                slug=slug, join_code=data.validated_data["join_code"]
            )
        except NotFound:
            limit_hit(request, scope="join", account=f"guest:{slug}")
            raise
        return Response(
            {"id": user.pk, "token": token, "gallery_url": gallery_link(request, user)},
            status=201,
        )
