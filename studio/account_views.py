"""Account settings: the signed-in user's API tokens, two-factor authentication and password.

These are pages, so API tokens never reach them (``studio.auth``): a token cannot mint more tokens, which
would let it outlive its own revocation."""

from __future__ import annotations

from typing import Any

from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from . import mfa_policy, permissions, services
from .audit import client_ip
from .errors import ServiceError
from .models import ApiToken, TokenScope, User
from .user_sessions import remember_session

EXPIRY_CHOICES = [("", "Never"), ("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("365", "1 year")]


def _user(request: HttpRequest) -> User:
    """The signed-in user (``login_required`` runs first)."""
    assert isinstance(request.user, User)
    return request.user


def _mfa_context(user: User) -> dict[str, Any]:
    authenticators = list(Authenticator.objects.filter(user=user).order_by("created_at"))
    by_type = {a.type: a for a in authenticators}
    codes = by_type.get(Authenticator.Type.RECOVERY_CODES)
    unused = None
    if codes is not None:
        unused = len(codes.wrap().get_unused_codes())
    return {
        "totp": by_type.get(Authenticator.Type.TOTP),
        "passkeys": [a for a in authenticators if a.type == Authenticator.Type.WEBAUTHN],
        "recovery_codes_left": unused,
        "required": mfa_policy.required_for(user),
        "passkeys_enabled": settings.STUDIO_PASSKEYS,
    }


def _render(request: HttpRequest, status: int = 200, **context: Any) -> HttpResponse:
    user = _user(request)
    context.setdefault("password_form", PasswordChangeForm(user))
    context.setdefault("token_name", "")
    tokens = (
        ApiToken.objects.filter(user=user).select_related("default_project").order_by("-created_at", "-id")
    )
    is_admin = permissions.is_admin(user)
    context.setdefault(
        "token_form", {"scope": services.check_token_scope(user, None), "expires": "", "project": ""}
    )
    scopes = [(value, label) for value, label in TokenScope.choices if is_admin or value != TokenScope.ADMIN]
    base = {
        "tokens": tokens,
        "now": timezone.now(),
        "scopes": scopes,
        "expiry_choices": EXPIRY_CHOICES,
        "projects": permissions.projects_visible_to(user).order_by("name"),
        "mfa": _mfa_context(user),
        "sso_name": settings.STUDIO_OIDC_NAME,
    }
    return render(request, "account/settings.html", {**base, **context}, status=status)


@login_required
@require_GET
def account(request: HttpRequest) -> HttpResponse:
    return _render(request)


@never_cache  # the response holds the new token: no browser or proxy may keep a copy
@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "")
    form = {key: request.POST.get(key, "") for key in ("scope", "expires", "project")}
    try:
        row, token = services.do_create_token(
            request.user,
            services.check_token_name(name),
            scope=form["scope"],
            expires_in_days=form["expires"],
            default_project=form["project"],
            ip=client_ip(request),
        )
    except ServiceError as exc:
        return _render(request, 400, token_error=exc.message, token_name=name, token_form=form)
    # Rendered straight into this response and never redirected through the session or messages, so the
    # plain token exists nowhere but on this one page.
    return _render(request, new_token=token, new_token_row=row)


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    try:
        services.do_revoke_token(request.user, token_id, ip=client_ip(request))
    except ServiceError as exc:
        return _render(request, exc.status, token_error=exc.message)
    messages.success(request, "Token revoked. Scripts using it are refused from now on.")
    return redirect("account")


@login_required
@require_POST
def password_change(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    form = PasswordChangeForm(user, request.POST)
    try:
        services.do_change_password(
            user, form, ip=client_ip(request), keep_session_key=request.session.session_key
        )
    except ServiceError:
        return _render(request, 400, password_form=form)
    update_session_auth_hash(request, user)  # keep this session; the others end
    remember_session(user, request.session.session_key)  # the session has a new key now
    messages.success(request, "Password changed. Other sessions of yours have been signed out.")
    return redirect("account")
