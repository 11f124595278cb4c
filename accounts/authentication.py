"""API tokens that expire: DRF's TokenAuthentication, refusing a token older than TOKEN_TTL_DAYS."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from .selectors import token_expired


class ExpiringTokenAuthentication(TokenAuthentication):
    """An expired token answers 401, as an unknown one does; ``POST /api/auth/token/`` with the
    password gives a fresh one."""

    def authenticate_credentials(self, key: str) -> tuple:
        user, token = super().authenticate_credentials(key)
        if token_expired(created_at=token.created):
            raise exceptions.AuthenticationFailed(
                "This token has expired. Ask for a new one with your username and password."
            )
        return user, token
