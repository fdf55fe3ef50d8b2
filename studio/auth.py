"""API tokens (hashed at rest) and how requests and websockets authenticate with them."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from .models import ApiToken

TOKEN_PREFIX = "stu_"  # noqa: S105 - a public marker, not a secret
# The Prometheus scrape brings its own bearer token (STUDIO_METRICS_TOKEN), which is no user's.
METRICS_PATH = "/metrics"


def digest_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def user_for_token(token: str) -> Any | None:
    """The active user owning this unrevoked token, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = (
        ApiToken.objects.select_related("user")
        .filter(digest=digest_token(token), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if row is None:
        return None
    now = timezone.now()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row.user


def bearer_from_header(value: str | bytes | None) -> str | None:
    if not value:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class BearerTokenMiddleware:
    """Authenticates ``Authorization: Bearer`` requests.

    A request carrying a valid token is the token owner's, with no session involved, so CSRF protection does
    not apply to it: browsers never attach this header cross-site on their own (no CORS is enabled), which is
    exactly the attack CSRF checks guard against. It therefore marks such requests as exempt, and it answers
    401 at once for a bad token, so a script never falls back to an anonymous or session identity.
    """

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        header = request.headers.get("Authorization")
        if header is not None and request.path_info != METRICS_PATH:
            token = bearer_from_header(header)
            user = user_for_token(token) if token else None
            if user is None:
                return JsonResponse({"error": "The API token is missing, invalid or revoked."}, status=401)
            request.user = user
            request._cached_user = user  # type: ignore[attr-defined]  # AuthenticationMiddleware keeps it
            request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]
            request.token_authenticated = True  # type: ignore[attr-defined]
        return self.get_response(request)


class WebsocketTokenAuthMiddleware:
    """Websockets: a ``Authorization: Bearer`` handshake header wins over the session cookie."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.session_stack = AuthMiddlewareStack(inner)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers", []))
        if b"authorization" in headers:
            # Tokens only travel in the header, never in the URL, so they stay out of access logs.
            token = bearer_from_header(headers[b"authorization"])
            user = await database_sync_to_async(user_for_token)(token) if token else None
            return await self.inner(dict(scope, user=user or AnonymousUser()), receive, send)
        return await self.session_stack(scope, receive, send)


class WebsocketOriginMiddleware:
    """Browsers always send ``Origin``; it must be one of our hosts (``AllowedHostsOriginValidator``).

    A handshake with no Origin but an ``Authorization`` header comes from a script, which no other site can
    drive, so it goes through to token authentication instead of being refused for lack of an Origin.
    """

    def __init__(self, inner: Any) -> None:
        from channels.security.websocket import AllowedHostsOriginValidator

        self.inner = inner
        self.validated = AllowedHostsOriginValidator(inner)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers", []))
        if b"origin" not in headers and b"authorization" in headers:
            return await self.inner(scope, receive, send)
        return await self.validated(scope, receive, send)
