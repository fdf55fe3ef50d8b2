"""``/api/v1/admin/``: users and the audit log, for site admins (shared/API.md).

For anyone else signed in these endpoints do not exist: 404, decided by ``permissions.can_use_admin_area``.
Anonymous callers get 401 from ``@api`` before that.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404

from . import audit_log, permissions, services, usage
from .api_utils import api
from .audit import client_ip
from .pagination import keyset_page

User = get_user_model()

AUDIT_PAGE_SIZE = 50


def _require_admin(request: HttpRequest) -> None:
    if not permissions.can_use_admin_area(request.user):
        raise Http404


@api(["GET"])
def users(request: HttpRequest) -> tuple[int, Any]:
    """Every account, with what it used this month (calendar month, UTC)."""
    _require_admin(request)
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
    return 200, result


@api(["POST"])
def user_deactivate(request: HttpRequest, username: str) -> tuple[int, Any]:
    _require_admin(request)
    user = get_object_or_404(User, username=username)
    user = services.do_deactivate_user(request.user, user, ip=client_ip(request))
    return 200, {"username": user.get_username(), "is_active": user.is_active}


@api(["GET"])
def audit(request: HttpRequest) -> tuple[int, Any]:
    """Events newest first, filtered by ``actor``, ``action``, ``project``, ``since`` and ``until``."""
    _require_admin(request)
    filters = audit_log.check_audit_filters(request.GET)
    page, next_cursor = keyset_page(
        audit_log.audit_events(filters), request.GET.get("cursor"), AUDIT_PAGE_SIZE, field="time"
    )
    return 200, {"results": [audit_log.event_to_dict(e) for e in page], "next": next_cursor}
