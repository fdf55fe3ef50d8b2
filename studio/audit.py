"""The audit trail: one call records who did what, to what, from where.

Services call ``record`` for every action the studio audits; sign-in and sign-out are recorded from Django's
auth signals. A failed sign-in is not: anyone can cause one, and the trail is append-only, so failures go to
the log and count towards the sign-in throttle, which records one ``auth.lockout`` per lockout
(``studio.sign_in``). Details never hold prompts or secrets: only ids, names, roles and numbers.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from .models import AuditEvent, Project

logger = logging.getLogger("studio.auth")

# Actions. The audit page and the API filter on these names.
SIGN_IN = "auth.sign_in"
SIGN_IN_FAILED = "auth.sign_in_failed"  # no longer recorded (see above); kept so older events can be found
SIGN_OUT = "auth.sign_out"
SIGN_IN_LOCKOUT = "auth.lockout"
SSO_SIGN_UP = "auth.sso_sign_up"
SSO_REFUSED = "auth.sso_refused"
MFA_ADD = "mfa.add"
MFA_REMOVE = "mfa.remove"
MFA_RESET = "mfa.recovery_codes_reset"
MFA_ADMIN_RESET = "mfa.admin_reset"
USER_ADMIN_CHANGE = "user.admin_change"
PROJECT_CREATE = "project.create"
PROJECT_DELETE = "project.delete"
MEMBER_ADD = "member.add"
MEMBER_ROLE = "member.role_change"
MEMBER_REMOVE = "member.remove"
QUOTA_CHANGE = "quota.change"
JOB_CREATE = "job.create"
JOB_CANCEL = "job.cancel"
MODEL_INSTALL = "model.install"
MODEL_REMOVE = "model.remove"
ASSET_REVIEW = "asset.review"
ASSET_DELETE = "asset.delete"
ASSET_UPLOAD = "asset.upload"
ASSET_EXPORT = "asset.export"
ASSET_SIGN_FAILED = "asset.sign_failed"
ASSET_PURGE = "asset.purge"
RETENTION_CHANGE = "project.retention_change"
TOKEN_CREATE = "token.create"  # noqa: S105 - an action name
TOKEN_REVOKE = "token.revoke"  # noqa: S105 - an action name
USER_CREATE = "user.create"
USER_DEACTIVATE = "user.deactivate"
PASSWORD_CHANGE = "user.password_change"  # noqa: S105 - an action name
STYLE_CREATE = "style.create"
STYLE_EDIT = "style.edit"
STYLE_DELETE = "style.delete"
STYLE_COPY = "style.copy"

ACTIONS = [
    SIGN_IN, SIGN_IN_FAILED, SIGN_OUT, PROJECT_CREATE, PROJECT_DELETE, MEMBER_ADD, MEMBER_ROLE, MEMBER_REMOVE,
    QUOTA_CHANGE, JOB_CREATE, JOB_CANCEL, MODEL_INSTALL, MODEL_REMOVE, ASSET_REVIEW, ASSET_DELETE,
    ASSET_UPLOAD, ASSET_EXPORT, ASSET_SIGN_FAILED, ASSET_PURGE, RETENTION_CHANGE, TOKEN_CREATE,
    TOKEN_REVOKE, USER_CREATE, USER_DEACTIVATE, PASSWORD_CHANGE,
    SIGN_IN_LOCKOUT, SSO_SIGN_UP, SSO_REFUSED, MFA_ADD, MFA_REMOVE, MFA_RESET, MFA_ADMIN_RESET,
    USER_ADMIN_CHANGE, STYLE_CREATE, STYLE_EDIT, STYLE_DELETE, STYLE_COPY,
]  # fmt: skip


def client_ip(request: HttpRequest | None) -> str | None:
    """The client's address: the peer's, unless the peer is one of the studio's own proxies
    (``STUDIO_TRUSTED_PROXIES``: addresses or networks). Then ``X-Forwarded-For`` is read from the right,
    skipping the trusted proxies' own hops, and the first address that is not one of them is the client
    (anything further left was written by the client itself and proves nothing)."""
    if request is None:
        return None
    peer = _address(request.META.get("REMOTE_ADDR", ""))
    if peer is None or not _trusted(peer):
        return str(peer) if peer is not None else None
    client = peer
    for hop in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        address = _address(hop)
        if address is None:
            break  # a hop our proxy did not write sensibly: trust nothing beyond it
        client = address
        if not _trusted(address):
            break
    return str(client)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(address in network for network in _trusted_networks(tuple(settings.STUDIO_TRUSTED_PROXIES)))


@functools.lru_cache(maxsize=8)
def _trusted_networks(entries: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip()]


def record(
    actor: Any,
    action: str,
    *,
    target: str = "",
    project: Project | None = None,
    ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event. ``actor`` may be None (the system, or an unknown user)."""
    assert action in ACTIONS, action
    known = actor is not None and getattr(actor, "is_authenticated", False)
    return AuditEvent.objects.create(
        actor=actor if known else None,
        actor_name=actor.get_username() if known else "",
        action=action,
        target=target[:300],
        project=project,
        project_slug=project.slug if project else "",
        ip=ip,
        details=details or {},
    )


def sign_in_method(request: HttpRequest | None) -> dict[str, Any]:
    """How this session signed in, from allauth's record of it: ``{"method": "password"}``,
    ``{"method": "sso", "provider": ...}``, with ``"mfa": type`` when a second factor was used."""
    records = getattr(request, "session", {}).get("account_authentication_methods", []) if request else []
    found: dict[str, Any] = {}
    for entry in records:
        method = entry.get("method")
        if method == "socialaccount":
            found.update(method="sso", provider=entry.get("provider", ""))
        elif method == "password":
            found.setdefault("method", "password")
        elif method == "mfa":
            found["mfa"] = entry.get("type", "")
    return found


@receiver(user_logged_in)
def _signed_in(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    record(
        user,
        SIGN_IN,
        target=f"user:{user.get_username()}",
        ip=client_ip(request),
        details=sign_in_method(request),
    )


@receiver(user_logged_out)
def _signed_out(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    if user is not None:
        record(user, SIGN_OUT, target=f"user:{user.get_username()}", ip=client_ip(request))


@receiver(user_login_failed)
def _sign_in_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # The username tried goes to the log (it is how an operator spots guessing); the password never does.
    logger.info(
        "failed sign-in for %r from %s", str(credentials.get("username", ""))[:150], client_ip(request)
    )
