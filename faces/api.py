"""The member's face data: register a selfie (with consent), delete everything."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.ratelimits import limit_hit, raise_if_limited
from core.openapi import AUTHED, errors, fields
from core.uploads import upload_size_check

from . import services


class SelfieApi(APIView):
    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(allow_empty_file=True, use_url=False)
        consent = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={
            201: fields(
                "SelfieOutput",
                status=serializers.ChoiceField(choices=["queued", "indexed"]),
                faces_found=serializers.IntegerField(),
            ),
            **errors(*AUTHED, 429, e400="consent_required, no_face, multiple_faces, invalid_image"),
        },
    )
    def put(self, request: Request) -> Response:
        # Each selfie is decoded and searched for faces in the web process: every try counts.
        raise_if_limited(limit_hit(request, scope="selfie", account=str(request.user.pk)))
        upload_size_check(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        selfie = services.selfie_register(
            user=request.user,
            upload=data.validated_data["file"],
            consent=data.validated_data["consent"],
        )
        # A kept selfie has exactly one face: the check refuses any other count.
        return Response({"status": selfie.status, "faces_found": 1}, status=201)

    post = put  # HTML forms and simple clients cannot send PUT


class FaceDataApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={204: None, **errors(*AUTHED)})
    def delete(self, request: Request) -> HttpResponse:
        services.member_forget(user_id=request.user.pk)
        return HttpResponse(status=204)
