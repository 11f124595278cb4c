from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.openapi import STAFF, errors, fields

from .monitoring import health, queue_stats

HEALTH = fields(
    "Health",
    database=serializers.CharField(),
    broker=serializers.CharField(),
    workers=serializers.CharField(),
)


class QueueStatsApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(
        responses={
            200: fields(
                "QueueStats",
                queue=serializers.DictField(),
                cache=serializers.DictField(),
                engine=serializers.DictField(),
            ),
            **errors(*STAFF),
        }
    )
    def get(self, request: Request) -> Response:
        return Response(queue_stats())


class HealthApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        responses={
            200: HEALTH,
            503: OpenApiResponse(HEALTH, description="the database or the broker is down"),
            **errors(400, 405, 406),
        }
    )
    def get(self, request: Request) -> Response:
        body, healthy = health()
        return Response(body, status=200 if healthy else 503)
