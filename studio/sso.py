"""Single sign-on through the studio's OpenID Connect identity provider (allauth's ``openid_connect``).

Who may come in is decided at every SSO sign-in, first or not: an identity whose email domain is in
``STUDIO_SSO_ALLOWED_DOMAINS`` or who is in one of ``STUDIO_SSO_ALLOWED_GROUPS`` (the IdP's groups claim).
Anyone else is refused, and the refusal is audited. A first sign-in creates the account; one whose verified
email matches an existing account signs that account in. Members of ``STUDIO_SSO_ADMIN_GROUPS`` are site
admins, and leaving those groups at the IdP ends it at their next sign-in (break-glass accounts excepted:
the IdP never changes them). Every SSO sign-up, sign-in and admin change is audited.
"""

from __future__ import annotations

from typing import Any

from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialLogin
from django.conf import settings
from django.http import HttpRequest
from django.shortcuts import render

from . import audit, services
from .audit import client_ip
from .sign_in import is_break_glass


def claims(sociallogin: SocialLogin) -> dict[str, Any]:
    """The identity's claims: the ID token's, completed by the userinfo answer."""
    data = sociallogin.account.extra_data or {}
    merged: dict[str, Any] = {}
    for part in ("id_token", "userinfo"):
        if isinstance(data.get(part), dict):
            merged.update(data[part])
    return merged or dict(data)


def groups_of(found: dict[str, Any]) -> list[str]:
    value = found.get(settings.STUDIO_OIDC_GROUPS_CLAIM) or []
    if isinstance(value, str):
        value = [value]
    return [str(group) for group in value if isinstance(group, str | int)]


def email_domain(found: dict[str, Any]) -> str:
    email = str(found.get("email") or "")
    return email.rpartition("@")[2].lower() if "@" in email else ""


def is_allowed(found: dict[str, Any]) -> bool:
    """Whether this identity may use the studio: its email domain or one of its groups is allowed. An
    email counts only when the IdP says it is verified (unless ``STUDIO_SSO_REQUIRE_VERIFIED_EMAIL`` is
    off, for IdPs that never say)."""
    verified = found.get("email_verified") in (True, "true", "True", 1)
    verified = verified or not settings.STUDIO_SSO_REQUIRE_VERIFIED_EMAIL
    if verified and email_domain(found) in settings.STUDIO_SSO_ALLOWED_DOMAINS:
        return True
    return bool(set(groups_of(found)) & set(settings.STUDIO_SSO_ALLOWED_GROUPS))


def admin_from_groups(found: dict[str, Any]) -> bool | None:
    """Whether the IdP makes this identity a site admin; None when no admin groups are configured."""
    if not settings.STUDIO_SSO_ADMIN_GROUPS:
        return None
    return bool(set(groups_of(found)) & set(settings.STUDIO_SSO_ADMIN_GROUPS))


def _apply_admin_mapping(request: HttpRequest, user: Any, found: dict[str, Any]) -> None:
    wanted = admin_from_groups(found)
    if wanted is None or is_break_glass(user.get_username()):
        return
    services.do_set_site_admin(
        user,
        wanted,
        via="sso",
        groups=sorted(set(groups_of(found)) & set(settings.STUDIO_SSO_ADMIN_GROUPS)),
        ip=client_ip(request),
    )


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        found = claims(sociallogin)
        if not is_allowed(found):
            audit.record(
                None,
                audit.SSO_REFUSED,
                target=f"sso:{str(found.get('email') or found.get('sub') or '')[:200]}",
                ip=client_ip(request),
                details={
                    "provider": sociallogin.account.provider,
                    "email_domain": email_domain(found),
                    "groups": groups_of(found)[:20],
                },
            )
            response = render(
                request,
                "account/sso_refused.html",
                {"provider_name": settings.STUDIO_OIDC_NAME, "email": found.get("email") or ""},
                status=403,
            )
            raise ImmediateHttpResponse(response)
        if sociallogin.is_existing and sociallogin.user is not None:
            _apply_admin_mapping(request, sociallogin.user, found)

    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        return is_allowed(claims(sociallogin))

    def save_user(self, request: HttpRequest, sociallogin: SocialLogin, form: Any = None) -> Any:
        user = super().save_user(request, sociallogin, form)
        found = claims(sociallogin)
        audit.record(
            user,
            audit.SSO_SIGN_UP,
            target=f"user:{user.get_username()}",
            ip=client_ip(request),
            details={
                "provider": sociallogin.account.provider,
                "email_domain": email_domain(found),
                "groups": groups_of(found)[:20],
            },
        )
        _apply_admin_mapping(request, user, found)
        return user
