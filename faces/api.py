"""The member's face data: register a selfie (with consent), delete everything."""

from __future__ import annotations

from django.http import HttpResponse
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.uploads import upload_size_check

from . import services


class SelfieApi(APIView):
    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(allow_empty_file=True, use_url=False)
        consent = serializers.CharField(required=False, allow_blank=True, default="")

    def put(self, request: Request) -> Response:
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

    def delete(self, request: Request) -> HttpResponse:
        services.member_forget(user_id=request.user.pk)
        return HttpResponse(status=204)
