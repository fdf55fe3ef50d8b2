"""API tokens (hashed at rest), how requests and websockets authenticate with them, and what each token's
scope lets it do.

Tokens are for scripts: they are accepted on ``/api/``, on the AUTOMATIC1111-compatible ``/sdapi/`` and on the
websockets, and nowhere else. On a page an ``Authorization`` header is ignored, so a token can never act
through the browser-facing views (their forms, CSRF and MFA assume a signed-in person).

Scopes are enforced here, once, from the method and the path (``required_scope``), before any view runs:
``read`` for safe methods, ``generate`` for the rest, ``admin`` for the admin API. Roles still decide inside
a scope. The token row is on the request as ``request.api_token`` (None for a browser session) for views
that need more (the A1111 API reads its ``default_project``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from . import permissions
from .models import ApiToken, TokenScope
from .user_sessions import WebsocketSessionLifetime

TOKEN_PREFIX = "stu_"  # noqa: S105 - a public marker, not a secret
TOKEN_PATHS = ("/api/", "/sdapi/")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Site-admin actions outside /api/v1/admin/: (method, path pattern).
ADMIN_ROUTES = [("PUT", re.compile(r"^/api/v1/projects/[^/]+/quota/?$"))]


def digest_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def accepts_tokens(path: str) -> bool:
    """Whether a request to ``path`` may authenticate with an API token."""
    return path.startswith(TOKEN_PATHS)


def required_scope(method: str, path: str) -> str:
    """The scope a token needs for ``method path``. The one rule for every API, whatever serves it."""
    if path.startswith("/api/v1/admin/") or path == "/api/v1/admin":
        return TokenScope.ADMIN
    if any(method == m and pattern.match(path) for m, pattern in ADMIN_ROUTES):
        return TokenScope.ADMIN
    if method in SAFE_METHODS:
        return TokenScope.READ
    return TokenScope.GENERATE


@dataclass(frozen=True)
class TokenRefused(Exception):
    message: str


def token_row(token: str) -> ApiToken:
    """The unrevoked, unexpired token row of an active user; TokenRefused (saying why) otherwise."""
    row = None
    if token.startswith(TOKEN_PREFIX):
        row = (
            ApiToken.objects.select_related("user")
            .filter(digest=digest_token(token), revoked_at__isnull=True, user__is_active=True)
            .first()
        )
    if row is None:
        raise TokenRefused("The API token is missing, invalid or revoked.")
    now = timezone.now()
    if row.expires_at is not None and row.expires_at <= now:
        raise TokenRefused(
            f"The API token “{row.name or row.prefix}” expired on {row.expires_at:%Y-%m-%d %H:%M} UTC; "
            "create a new one on your Account page."
        )
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row


def user_for_token(token: str) -> Any | None:
    """The active user owning this usable token, or None."""
    try:
        return token_row(token).user
    except TokenRefused:
        return None


def bearer_from_header(value: str | bytes | None) -> str | None:
    if not value:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def basic_from_header(value: str) -> tuple[str, str] | None:
    """``(username, secret)`` of an HTTP Basic header, or None."""
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, sep, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (username, secret) if sep else None


def token_from_request(header: str, path: str) -> tuple[str | None, str | None]:
    """The token an ``Authorization`` header carries, and the username it claims (HTTP Basic only).

    The AUTOMATIC1111 API's tools send HTTP Basic; there its password must be an API token, never an
    account's password, so a leaked script configuration cannot sign anyone in.
    """
    bearer = bearer_from_header(header)
    if bearer:
        return bearer, None
    if path.startswith("/sdapi/"):
        basic = basic_from_header(header)
        if basic:
            return basic[1], basic[0]
    return None, None


def _needs_admin(request: HttpRequest) -> bool:
    return required_scope(request.method or "GET", request.path_info) == TokenScope.ADMIN


def scope_refusal(row: ApiToken, method: str, path: str) -> JsonResponse | None:
    """The 403 for a token whose scope does not cover ``method path``, or None."""
    needed = required_scope(method, path)
    if row.allows(needed):
        return None
    return JsonResponse(
        {
            "error": (
                f"This API token has the {row.scope} scope; {method} {path} needs a token with the "
                f"{needed} scope. Create one on your Account page."
            )
        },
        status=403,
    )


class BearerTokenMiddleware:
    """Authenticates API requests that carry a token, and enforces the token's scope.

    A request carrying a valid token is the token owner's, with no session involved, so CSRF protection does
    not apply to it: browsers never attach this header cross-site on their own (no CORS is enabled), which is
    exactly the attack CSRF checks guard against. It therefore marks such requests as exempt, and it answers
    401 at once for a bad token, so a script never falls back to an anonymous or session identity.
    """

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.api_token = None  # type: ignore[attr-defined]
        header = request.headers.get("Authorization")
        if header is None or not accepts_tokens(request.path_info):
            return self.get_response(request)
        path = request.path_info
        a1111 = path.startswith("/sdapi/")
        token, claimed_username = token_from_request(header, path)
        try:
            if not token:
                also = ", or HTTP Basic with your username and a token" if a1111 else ""
                raise TokenRefused(f"Send an API token: Authorization: Bearer <token>{also}.")
            row = token_row(token)
            if claimed_username is not None and claimed_username != row.user.get_username():
                raise TokenRefused("The API token is missing, invalid or revoked.")
        except TokenRefused as refused:
            response = JsonResponse({"error": refused.message}, status=401)
            response["WWW-Authenticate"] = f'{"Basic" if a1111 else "Bearer"} realm="studio"'
            return response
        user = row.user
        refusal = scope_refusal(row, request.method or "GET", path)
        if refusal is not None and (permissions.is_admin(user) or not _needs_admin(request)):
            return refusal
        # (Someone who is no site admin asking the admin API is told it does not exist, by the view, exactly
        # as with a browser session; naming a scope they can never hold would say more.)
        request.user = user
        request._cached_user = user  # type: ignore[attr-defined]  # AuthenticationMiddleware keeps it
        request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]
        request.api_token = row  # type: ignore[attr-defined]
        return self.get_response(request)


@database_sync_to_async
def _websocket_token(token: str) -> ApiToken | None:
    try:
        return token_row(token)
    except TokenRefused:
        return None


class WebsocketTokenAuthMiddleware:
    """Websockets: a ``Authorization: Bearer`` handshake header wins over the session cookie.

    Sockets only stream what the caller may read, so every usable token (each has at least ``read``) may open
    one; a socket that streams what only the admin API tells asks for the admin scope itself (the token row
    is in the scope as ``api_token``). A browser session that has outlived its idle or absolute lifetime
    opens none.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.session_stack = AuthMiddlewareStack(WebsocketSessionLifetime(inner))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers", []))
        if b"authorization" in headers:
            # Tokens only travel in the header, never in the URL, so they stay out of access logs.
            token = bearer_from_header(headers[b"authorization"])
            row = await _websocket_token(token) if token else None
            user = row.user if row is not None else AnonymousUser()
            return await self.inner(dict(scope, user=user, api_token=row), receive, send)
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
