"""Multi-factor authentication (allauth's ``mfa``: authenticator apps with recovery codes, and passkeys) and
the site's policy on it.

``STUDIO_MFA_REQUIRED`` is ``off``, ``admins`` (site admins) or ``everyone``. A signed-in user the policy
covers who has no second factor yet is sent to set one up before anything else: pages redirect to the
authenticator-app setup, the JSON API answers 403. A session signed in through the identity provider counts
as multi-factor when ``STUDIO_MFA_TRUST_SSO`` is on (the IdP applies its own policy). The last second factor
of a covered user cannot be removed. Adding, removing and resetting factors is audited.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.mfa.models import Authenticator
from allauth.mfa.signals import authenticator_added, authenticator_removed, authenticator_reset
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.contrib import messages
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect

from . import audit, permissions
from .audit import client_ip

SECOND_FACTORS = [Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN]
# While a user must still set up MFA, only these are served: sign-in and MFA pages, static files, health.
SETUP_PATHS = ("/accounts/", "/static/", "/healthz", "/readyz")
SETUP_MESSAGE = "This studio requires two-factor authentication for {whom}. Set it up to continue."
ENCRYPTED_PREFIX = "fernet:"


def required_for(user: Any) -> bool:
    """Whether the policy requires ``user`` to have a second factor."""
    policy = settings.STUDIO_MFA_REQUIRED
    if not (user.is_authenticated and user.is_active):
        return False
    return policy == "everyone" or (policy == "admins" and permissions.is_admin(user))


def has_second_factor(user: Any) -> bool:
    return Authenticator.objects.filter(user_id=user.pk, type__in=SECOND_FACTORS).exists()


def must_set_up(request: HttpRequest) -> bool:
    """Whether this browser session has to set up MFA before it may do anything else."""
    user = request.user
    if getattr(request, "api_token", None) is not None or not required_for(user):
        return False
    if settings.STUDIO_MFA_TRUST_SSO and audit.sign_in_method(request).get("method") == "sso":
        return False
    return not has_second_factor(user)


class MfaRequiredMiddleware:
    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(SETUP_PATHS) or not must_set_up(request):
            return self.get_response(request)
        whom = "everyone" if settings.STUDIO_MFA_REQUIRED == "everyone" else "site admins"
        message = SETUP_MESSAGE.format(whom=whom)
        if request.path_info.startswith(("/api/", "/sdapi/")):
            return JsonResponse(
                {"error": message + " Open your Account page in the browser to set it up."}, status=403
            )
        messages.warning(request, message)
        return redirect("mfa_activate_totp")


def _fernet() -> MultiFernet:
    """Keys derived from the secret key (and its fallbacks, so secrets stay readable across a rotation)."""
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet(
        [
            Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"studio-mfa:" + key.encode()).digest()))
            for key in keys
        ]
    )


class MfaAdapter(DefaultMFAAdapter):
    def encrypt(self, text: str) -> str:
        # TOTP secrets and the recovery-code seed are kept encrypted, so a database dump alone is no second
        # factor.
        return ENCRYPTED_PREFIX + _fernet().encrypt(text.encode()).decode()

    def decrypt(self, encrypted_text: str) -> str:
        if not encrypted_text.startswith(ENCRYPTED_PREFIX):
            return encrypted_text
        try:
            return _fernet().decrypt(encrypted_text[len(ENCRYPTED_PREFIX) :].encode()).decode()
        except InvalidToken as exc:
            raise ValueError(
                "An MFA secret cannot be decrypted: was the secret key changed without keeping the old one "
                "in SECRET_KEY_FALLBACKS?"
            ) from exc

    def can_delete_authenticator(self, authenticator: Authenticator) -> bool:
        user = authenticator.user
        if authenticator.type not in SECOND_FACTORS or not required_for(user):
            return True
        others = Authenticator.objects.filter(user=user, type__in=SECOND_FACTORS).exclude(pk=authenticator.pk)
        return others.exists()


def _record(action: str, request: HttpRequest | None, user: Any, authenticator: Authenticator) -> None:
    audit.record(
        user,
        action,
        target=f"user:{user.get_username()}",
        ip=client_ip(request),
        details={"type": authenticator.type},
    )


@receiver(authenticator_added, dispatch_uid="studio.mfa.added")
def _added(sender: Any, request: HttpRequest, user: Any, authenticator: Authenticator, **kw: Any) -> None:
    _record(audit.MFA_ADD, request, user, authenticator)


@receiver(authenticator_removed, dispatch_uid="studio.mfa.removed")
def _removed(sender: Any, request: HttpRequest, user: Any, authenticator: Authenticator, **kw: Any) -> None:
    _record(audit.MFA_REMOVE, request, user, authenticator)


@receiver(authenticator_reset, dispatch_uid="studio.mfa.reset")
def _reset(sender: Any, request: HttpRequest, user: Any, authenticator: Authenticator, **kw: Any) -> None:
    _record(audit.MFA_RESET, request, user, authenticator)
