"""Account settings: the signed-in user's API tokens and password."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from . import services
from .audit import client_ip
from .errors import ServiceError
from .models import ApiToken, User
from .user_sessions import remember_session

View = Callable[..., HttpResponse]


def session_only(view: View) -> View:
    """Account settings need a signed-in browser session, not an API token: a token that could mint more
    tokens would outlive its own revocation."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if getattr(request, "token_authenticated", False):
            return HttpResponse(
                "Account settings are only available when signed in with a password.",
                status=403,
                content_type="text/plain",
            )
        return view(request, *args, **kwargs)

    return wrapped


def _user(request: HttpRequest) -> User:
    """The signed-in user (``login_required`` runs first)."""
    assert isinstance(request.user, User)
    return request.user


def _render(request: HttpRequest, status: int = 200, **context: Any) -> HttpResponse:
    context.setdefault("password_form", PasswordChangeForm(_user(request)))
    context.setdefault("token_name", "")
    tokens = ApiToken.objects.filter(user=_user(request)).order_by("-created_at", "-id")
    return render(request, "account/settings.html", {"tokens": tokens, **context}, status=status)


@login_required
@session_only
@require_GET
def account(request: HttpRequest) -> HttpResponse:
    return _render(request)


@never_cache  # the response holds the new token: no browser or proxy may keep a copy
@login_required
@session_only
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "")
    try:
        row, token = services.do_create_token(
            request.user, services.check_token_name(name), ip=client_ip(request)
        )
    except ServiceError as exc:
        return _render(request, 400, token_error=exc.message, token_name=name)
    # Rendered straight into this response and never redirected through the session or messages, so the
    # plain token exists nowhere but on this one page.
    return _render(request, new_token=token, new_token_row=row)


@login_required
@session_only
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    try:
        services.do_revoke_token(request.user, token_id, ip=client_ip(request))
    except ServiceError as exc:
        return _render(request, exc.status, token_error=exc.message)
    messages.success(request, "Token revoked. Scripts using it are refused from now on.")
    return redirect("account")


@login_required
@session_only
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
