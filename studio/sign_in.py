"""Password sign-in on top of django-allauth: the studio's login page, the "SSO only" rule with its
break-glass accounts, and the throttle on failed sign-ins.

The throttle is allauth's ``login_failed`` rate limit (``ACCOUNT_RATE_LIMITS``, from ``STUDIO_SIGN_IN_*``):
per account and per client address, each failure counts and a successful sign-in takes its own attempt
back. When either limit is full, that account or address is refused, the right password included, until the
oldest failure in the window has aged out. This module adds what allauth leaves out: the refusal says which
limit was hit and when to retry, and each lockout is audited once, however many attempts it refuses.
"""

from __future__ import annotations

import hashlib
import math
import time
from datetime import datetime
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.auth_backends import AuthenticationBackend
from allauth.account.forms import LoginForm as AllauthLoginForm
from allauth.account.views import LoginView as AllauthLoginView
from allauth.core.internal import ratelimit
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from . import audit
from .audit import client_ip

RATE_APP = "allauth.account"
RATE_ACTION = "login_failed"


def sso_enabled() -> bool:
    return bool(settings.STUDIO_OIDC_ISSUER)


def is_break_glass(username: str) -> bool:
    return username.strip().lower() in {name.lower() for name in settings.STUDIO_SSO_BREAK_GLASS}


def password_sign_in_allowed(username: str) -> bool:
    """Whether ``username`` may sign in with a password: always, unless the studio is SSO only, where only
    the break-glass accounts may."""
    return not settings.STUDIO_SSO_ONLY or is_break_glass(username)


def sso_only_message() -> str:
    return f"Password sign-in is turned off here. Sign in with {settings.STUDIO_OIDC_NAME}."


# --- the throttle --


def throttle_key(username: str) -> str:
    """What failures of one account are counted under (the same for every host name the studio answers to)."""
    return username.strip().lower()


def lockout(request: HttpRequest, username: str) -> tuple[str, float] | None:
    """``("account" | "ip", until)`` when a sign-in as ``username`` from this client is refused now."""
    now = time.time()
    for rate in ratelimit.get_rates(app=RATE_APP, action=RATE_ACTION):
        cache_key = ratelimit.get_cache_key(
            request, app=RATE_APP, action=RATE_ACTION, rate=rate, key=throttle_key(username)
        )
        allowed, history = ratelimit.apply_rate(list(cache.get(cache_key, [])), now, rate, dry_run=True)
        if not allowed:
            # The oldest failure still in the window frees its place when it leaves the window.
            return ("ip" if rate.per == "ip" else "account"), history[-1] + rate.duration
    return None


def lockout_message(which: str, until: float) -> str:
    whom = "this account" if which == "account" else "your network address"
    minutes = max(1, math.ceil((until - time.time()) / 60))
    local = timezone.localtime(datetime.fromtimestamp(until, tz=timezone.get_current_timezone()))
    return (
        f"Too many failed sign-ins for {whom}. Try again in {minutes} minute{'s' if minutes != 1 else ''} "
        f"(after {local:%H:%M} {local.tzname()})."
    )


def record_lockout_once(request: HttpRequest, username: str, which: str, until: float) -> None:
    """Audit a lockout the first time it refuses a sign-in, and not again until it has ended.

    An account lockout is recorded only for an account that exists: the name tried is anyone's text, and
    the trail keeps it forever. An address lockout is recorded whatever names were tried."""
    ip = client_ip(request)
    subject = throttle_key(username) if which == "account" else str(ip)
    # While locked, refused attempts are not counted, so every refusal of one lockout sees the same end.
    marker = "studio:lockout:" + hashlib.sha256(f"{which}:{subject}:{until:.6f}".encode()).hexdigest()
    if not cache.add(marker, 1, timeout=max(1, math.ceil(until - time.time())) + 60):
        return
    if which == "account":
        user = get_user_model().objects.filter(username__iexact=subject).first()
        if user is None:
            audit.logger.warning("sign-in lockout for unknown account %r from %s", subject[:150], ip)
            return
        target = f"user:{user.get_username()}"
        limit = settings.STUDIO_SIGN_IN_FAILURES_PER_ACCOUNT
    else:
        target = f"ip:{ip}"
        limit = settings.STUDIO_SIGN_IN_FAILURES_PER_IP
    audit.record(
        None,
        audit.SIGN_IN_LOCKOUT,
        target=target,
        ip=ip,
        details={
            "scope": which,
            "failures": limit,
            "until": datetime.fromtimestamp(until, tz=timezone.get_current_timezone()).isoformat(),
        },
    )


# --- allauth's hooks --


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        # Accounts are made by site admins (/manage/users/new/) or at a first single sign-on (studio.sso).
        return False

    def get_client_ip(self, request: HttpRequest) -> str:
        return client_ip(request) or "0.0.0.0"  # noqa: S104 - a placeholder for an unknown address

    def _get_login_attempts_cache_key(self, request: HttpRequest, **credentials: Any) -> str:
        return throttle_key(str(credentials.get("username", "")))

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        username = str(credentials.get("username", ""))
        try:
            super().pre_authenticate(request, **credentials)
        except ValidationError:
            found = lockout(request, username)
            if found is None:  # freed in between: allauth could not count this attempt, so refuse it plainly
                raise
            record_lockout_once(request, username, *found)
            raise ValidationError(lockout_message(*found), code="too_many_login_attempts") from None

    def authenticate(self, request: HttpRequest, **credentials: Any) -> Any:
        if not password_sign_in_allowed(str(credentials.get("username", ""))):
            raise ValidationError(sso_only_message(), code="sso_only")
        return super().authenticate(request, **credentials)


class PasswordBackend(AuthenticationBackend):
    """allauth's backend, refusing password sign-in when the studio is SSO only (break-glass excepted).

    Every password check goes through here, Django's own ``authenticate()`` included, so no other sign-in
    path can skip the rule."""

    def authenticate(self, request: HttpRequest | None, **credentials: Any) -> Any:
        user = super().authenticate(request, **credentials)
        if user is not None and not password_sign_in_allowed(user.get_username()):
            return None
        return user


class LoginForm(AllauthLoginForm):
    """allauth's form; also takes the login as ``username`` (the name the studio's page always sent)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        data = kwargs.get("data")
        if data is not None and "login" not in data and "username" in data:
            data = data.copy()
            data["login"] = data["username"]
            kwargs["data"] = data
        super().__init__(*args, **kwargs)


class LoginView(AllauthLoginView):
    """The sign-in page: the password form and, when configured, the single sign-on button.

    When the studio is SSO only the password form is folded away behind a "break-glass" link."""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        form = context.get("form")
        if sso_enabled():
            context["sso"] = {
                "name": settings.STUDIO_OIDC_NAME,
                "url": reverse(
                    "openid_connect_login", kwargs={"provider_id": settings.STUDIO_OIDC_PROVIDER_ID}
                ),
            }
        context["password_sign_in"] = (
            not settings.STUDIO_SSO_ONLY
            or "break-glass" in self.request.GET
            or bool(form is not None and form.is_bound)
        )
        return context
