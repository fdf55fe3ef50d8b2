"""The site admin area under ``/manage/``: users, usage, the audit log and the model library.

Every page is for site admins only; anyone else signed in gets 404, as if the area did not exist
(``permissions.can_use_admin_area``). The lead's quota pages join the same sub-navigation
(``templates/manage/_nav.html``) and use ``admin_only`` the same way.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from allauth.mfa.models import Authenticator
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.db.models import Exists, OuterRef
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from . import audit, audit_log, mfa_policy, permissions, services, usage
from .audit import client_ip
from .errors import InvalidInput, ServiceError
from .models import ApiToken, UserSession
from .pagination import keyset_page

User = get_user_model()

AUDIT_PAGE = 50

View = Callable[..., HttpResponseBase]


def admin_only(view: View) -> View:
    """404 for anyone but a site admin. Goes under ``@login_required``, which sends anonymous visitors to sign
    in first."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not permissions.can_use_admin_area(request.user):
            raise Http404
        return view(request, *args, **kwargs)

    return wrapped


@login_required
@admin_only
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return redirect("manage-users")


@login_required
@admin_only
@require_GET
def users(request: HttpRequest) -> HttpResponse:
    period = usage.current_month()
    used = usage.by_user_id(period)
    with_mfa = Authenticator.objects.filter(user=OuterRef("pk"), type__in=mfa_policy.SECOND_FACTORS)
    rows = [
        {"user": u, "usage": used.get(u.pk) or usage.UsageRow(u.pk, u.username)}
        for u in User.objects.annotate(has_mfa=Exists(with_mfa)).order_by("username")
    ]
    return render(request, "manage/users.html", {"section": "users", "rows": rows, "period": period})


@login_required
@admin_only
@require_http_methods(["GET", "POST"])
def user_new(request: HttpRequest) -> HttpResponse:
    errors: dict[str, list[str]] = {}
    error = None
    form = {"username": "", "email": "", "is_admin": False}
    if request.method == "POST":
        form = {
            "username": request.POST.get("username", ""),
            "email": request.POST.get("email", ""),
            "is_admin": request.POST.get("is_admin") == "on",
        }
        try:
            user = services.do_create_user(
                request.user,
                form["username"],
                form["email"],
                request.POST.get("password", ""),
                is_admin=form["is_admin"],
                ip=client_ip(request),
            )
        except ServiceError as exc:
            error, errors = exc.message, exc.errors
        else:
            kind = "Admin" if user.is_superuser else "User"
            messages.success(request, f"{kind} “{user.get_username()}” created.")
            return redirect("manage-users")
    return render(
        request,
        "manage/user_new.html",
        {"section": "users", "form": form, "error": error, "errors": errors},
        status=400 if error else 200,
    )


@login_required
@admin_only
@require_http_methods(["GET", "POST"])
def user_deactivate(request: HttpRequest, username: str) -> HttpResponse:
    """GET asks for confirmation (and says what will end); POST deactivates."""
    target = get_object_or_404(User, username=username)
    if request.method == "POST":
        try:
            services.do_deactivate_user(request.user, target, ip=client_ip(request))
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"“{target.get_username()}” is deactivated; their sessions have ended.")
        return redirect("manage-users")
    context = {
        "section": "users",
        "target": target,
        "is_self": not permissions.can_deactivate(request.user, target),
        "sessions": UserSession.objects.filter(user=target).count(),
        "tokens": ApiToken.objects.filter(user=target, revoked_at__isnull=True).count(),
    }
    return render(request, "manage/user_deactivate.html", context)


@login_required
@admin_only
@require_http_methods(["GET", "POST"])
def user_mfa_reset(request: HttpRequest, username: str) -> HttpResponse:
    """GET asks for confirmation; POST removes the user's second factors (someone who lost their phone)."""
    target = get_object_or_404(User, username=username)
    if request.method == "POST":
        removed = services.do_reset_mfa(request.user, target, ip=client_ip(request))
        if removed:
            messages.success(request, f"Two-factor authentication of “{target.get_username()}” was reset.")
        else:
            messages.info(request, f"“{target.get_username()}” had no two-factor authentication to reset.")
        return redirect("manage-users")
    factors = Authenticator.objects.filter(user=target).values_list("type", flat=True)
    context = {"section": "users", "target": target, "factors": sorted(set(factors))}
    return render(request, "manage/user_mfa_reset.html", context)


@login_required
@admin_only
@require_GET
def usage_dashboard(request: HttpRequest) -> HttpResponse:
    error = None
    try:
        period = usage.month_period(request.GET.get("period"))
    except InvalidInput as exc:
        error, period = exc.errors["period"][0], usage.current_month()
    by_user, by_project = usage.by_user(period), usage.by_project(period)
    context = {
        "section": "usage",
        "period": period,
        "is_current": period == usage.current_month(),
        "error": error,
        "by_user": by_user,
        "by_project": by_project,
        "totals": {
            "images": sum(r.images for r in by_user),
            "gpu_seconds": sum(r.gpu_seconds for r in by_user),
        },
        "charts": [
            usage.bar_chart("Images per user", by_user, "images"),
            usage.bar_chart("GPU-seconds per user", by_user, "gpu_seconds", unit=" s"),
            usage.bar_chart("Images per project", by_project, "images"),
            usage.bar_chart("GPU-seconds per project", by_project, "gpu_seconds", unit=" s"),
        ],
    }
    return render(request, "manage/usage.html", context, status=400 if error else 200)


@login_required
@admin_only
@require_GET
def audit_page(request: HttpRequest) -> HttpResponse:
    context: dict[str, Any] = {"section": "audit", "actions": audit.ACTIONS, "events": []}
    try:
        filters = audit_log.check_audit_filters(request.GET)
        events, next_cursor = keyset_page(
            audit_log.audit_events(filters), request.GET.get("cursor"), AUDIT_PAGE, field="time"
        )
    except InvalidInput as exc:
        context.update(raw=_raw_filters(request), error=exc.message, errors=exc.errors)
        return render(request, "manage/audit.html", context, status=400)
    context.update(
        raw=filters.raw,
        events=[{"event": e, "details": json.dumps(e.details, sort_keys=True)} for e in events],
        next_cursor=next_cursor,
        next_query=filters.querystring(cursor=next_cursor or ""),
        filter_query=filters.querystring(),
        is_first_page=not request.GET.get("cursor"),
    )
    return render(request, "manage/audit.html", context)


def _raw_filters(request: HttpRequest) -> dict[str, str]:
    return {name: request.GET.get(name, "") for name in audit_log.FILTERS}


@login_required
@admin_only
@require_GET
def audit_export(request: HttpRequest) -> HttpResponseBase:
    """The filtered events as CSV, streamed: an export of a long history never sits in memory."""
    try:
        filters = audit_log.check_audit_filters(request.GET)
    except InvalidInput as exc:
        context = {
            "section": "audit",
            "actions": audit.ACTIONS,
            "raw": _raw_filters(request),
            "error": exc.message,
            "errors": exc.errors,
        }
        return render(request, "manage/audit.html", context, status=400)
    response = StreamingHttpResponse(
        audit_log.csv_lines(audit_log.audit_events(filters)), content_type="text/csv; charset=utf-8"
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="studio-audit-{stamp}.csv"'
    response["Cache-Control"] = "private, no-store"
    return response
