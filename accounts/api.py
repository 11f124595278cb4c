from __future__ import annotations

from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.openapi import COMMON, errors, fields

from .authentication import ExpiringTokenAuthentication
from .backends import login_retry_after
from .ratelimits import limit_hit, raise_if_limited
from .selectors import user_email_taken
from .services import credentials_check, guest_keep, user_signup, user_token


class SignupApi(APIView):
    """A new account; or, sent with a guest's token, the guest's own account made permanent
    (the same id, so their selfie, events and photos stay)."""

    # A token only: a browser's session must not turn this into a CSRF-exempt write.
    authentication_classes = [ExpiringTokenAuthentication]
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
        email = serializers.EmailField()
        password = serializers.CharField(write_only=True, min_length=8, max_length=128)

        def validate_username(self, value: str) -> str:
            others = get_user_model().objects.exclude(
                pk=getattr(self.context.get("user"), "pk", None)
            )
            if others.filter(username__iexact=value).exists():
                raise serializers.ValidationError("This username is taken.")
            return value

        def validate_email(self, value: str) -> str:
            # As much as Django's own form says of a username: taken, and nothing about whose.
            if user_email_taken(email=value):
                raise serializers.ValidationError("This email address is taken.")
            return value

        def validate(self, attrs: dict) -> dict:
            user = get_user_model()(username=attrs["username"], email=attrs["email"])
            try:
                validate_password(attrs["password"], user)
            except DjangoValidationError as exc:
                raise serializers.ValidationError({"password": list(exc.messages)}) from None
            return attrs

    @extend_schema(
        request=InputSerializer,
        responses={
            201: fields(
                "SignupOutput",
                id=serializers.IntegerField(),
                username=serializers.CharField(),
                token=serializers.CharField(),
            ),
            **errors(*COMMON, 401, 429, e400="invalid, with field errors"),
        },
    )
    def post(self, request: Request) -> Response:
        email = request.data.get("email") if hasattr(request.data, "get") else None
        raise_if_limited(
            limit_hit(request, scope="signup", account=email if isinstance(email, str) else "")
        )
        guest = request.user if getattr(request.user, "is_guest", False) else None
        data = self.InputSerializer(data=request.data, context={"user": guest})
        data.is_valid(raise_exception=True)
        if guest is not None:
            user, token = guest_keep(user=guest, **data.validated_data)
        else:
            user, token = user_signup(**data.validated_data)
        return Response({"id": user.pk, "username": user.username, "token": token}, status=201)


class TokenApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField()
        password = serializers.CharField(write_only=True)

    @extend_schema(
        request=InputSerializer,
        responses={
            200: fields("TokenOutput", token=serializers.CharField()),
            **errors(*COMMON, 403, 429, e400="invalid_credentials, or invalid input"),
        },
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        # accounts.backends counts the failures and refuses past the login limit.
        raise_if_limited(login_retry_after(request))
        user = credentials_check(user=user)
        return Response({"token": user_token(user=user)})
