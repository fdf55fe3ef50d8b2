"""``/api/v1/admin/``: users and the audit log, for site admins (shared/API.md).

For anyone else these endpoints do not exist: 404, decided by ``permissions.can_use_admin_area``.
Anonymous callers get 401 before that.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.http import Http404, HttpRequest
from ninja import Query

from . import audit_log, permissions, services, usage
from .api import admin_user
from .audit import client_ip
from .boundary import StudioRouter, answers, guarded
from .fields import Username
from .pagination import keyset_page
from .schemas import AdminUserOut, AuditPage, AuditQuery, UserStateOut

User = get_user_model()

AUDIT_PAGE_SIZE = 50

router = StudioRouter(tags=["admin"])


def admin_area(request: HttpRequest, **_: Any) -> None:
    """Guard: the admin area, for site admins only."""
    if not permissions.can_use_admin_area(request.user):
        raise Http404


@router.get(
    "/admin/users",
    response=answers({200: list[AdminUserOut]}, 404),
    guard=admin_area,
    url_name="api-admin-users",
)
def users(request: HttpRequest) -> list[dict[str, Any]]:
    """Every account, with what it used this month (calendar month, UTC)."""
    used = usage.by_user_id(usage.current_month())
    result = []
    for user in User.objects.order_by("username"):
        row = used.get(user.pk)
        result.append(
            {
                "username": user.get_username(),
                "is_active": user.is_active,
                "is_admin": user.is_superuser,
                "usage": {
                    "images": row.images if row else 0,
                    "gpu_seconds": round(row.gpu_seconds, 3) if row else 0,
                },
            }
        )
    return result


@router.post(
    "/admin/users/{username}/deactivate",
    response=answers({200: UserStateOut}, 404),
    guard=admin_user,
    url_name="api-admin-user-deactivate",
)
def user_deactivate(request: HttpRequest, username: Username) -> dict[str, Any]:
    """Deactivate the account: its sessions, tokens and open websockets end at once."""
    user = services.do_deactivate_user(request.user, guarded(request), ip=client_ip(request))
    return {"username": user.get_username(), "is_active": user.is_active}


@router.get(
    "/admin/audit", response=answers({200: AuditPage}, 400, 404), guard=admin_area, url_name="api-admin-audit"
)
def audit(request: HttpRequest, query: Query[AuditQuery]) -> dict[str, Any]:
    """Events newest first, filtered by ``actor``, ``action``, ``project``, ``since`` and ``until``."""
    filters = audit_log.check_audit_filters(query.model_dump(exclude_none=True))
    page, next_cursor = keyset_page(
        audit_log.audit_events(filters), query.cursor, AUDIT_PAGE_SIZE, field="time"
    )
    return {"results": [audit_log.event_to_dict(e) for e in page], "next": next_cursor}
