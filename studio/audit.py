"""The audit trail: one call records who did what, to what, from where.

Services call ``record`` for every action the studio audits; sign-in, failed sign-in and sign-out are recorded
from Django's auth signals. Details never hold prompts or secrets: only ids, names, roles and numbers.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from .models import AuditEvent, Project

# Actions. The audit page and the API filter on these names.
SIGN_IN = "auth.sign_in"
SIGN_IN_FAILED = "auth.sign_in_failed"
SIGN_OUT = "auth.sign_out"
PROJECT_CREATE = "project.create"
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

ACTIONS = [
    SIGN_IN, SIGN_IN_FAILED, SIGN_OUT, PROJECT_CREATE, MEMBER_ADD, MEMBER_ROLE, MEMBER_REMOVE,
    QUOTA_CHANGE, JOB_CREATE, JOB_CANCEL, MODEL_INSTALL, MODEL_REMOVE, ASSET_REVIEW, ASSET_DELETE,
    ASSET_UPLOAD, ASSET_EXPORT, ASSET_SIGN_FAILED, ASSET_PURGE, RETENTION_CHANGE, TOKEN_CREATE,
    TOKEN_REVOKE, USER_CREATE, USER_DEACTIVATE, PASSWORD_CHANGE,
]  # fmt: skip


def client_ip(request: HttpRequest | None) -> str | None:
    """The client's address. Behind the studio's proxy, the last hop it appended to X-Forwarded-For."""
    if request is None:
        return None
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if forwarded:
        return forwarded.split(",")[-1].strip() or None
    return request.META.get("REMOTE_ADDR") or None


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


@receiver(user_logged_in)
def _signed_in(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    record(user, SIGN_IN, target=f"user:{user.get_username()}", ip=client_ip(request))


@receiver(user_logged_out)
def _signed_out(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    if user is not None:
        record(user, SIGN_OUT, target=f"user:{user.get_username()}", ip=client_ip(request))


@receiver(user_login_failed)
def _sign_in_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # The username tried is kept (it is how an admin spots guessing); the password never is.
    record(
        None,
        SIGN_IN_FAILED,
        target=f"user:{str(credentials.get('username', ''))[:150]}",
        ip=client_ip(request),
    )
