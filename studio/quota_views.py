"""The admin's quota page: site defaults and per-user / per-project overrides, with this period's use."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from . import permissions, quotas
from .audit import client_ip
from .errors import ServiceError
from .models import Project, QuotaLimit, QuotaScope, QuotaUsage


@login_required
@require_http_methods(["GET", "POST"])
def quotas_page(request: HttpRequest) -> HttpResponse:
    if not permissions.is_admin(request.user):
        raise Http404
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = request.POST.get("form", "")
        try:
            _apply(request, form)
        except ServiceError as exc:
            errors[form] = exc.message + "".join(f" {k}: {' '.join(v)}" for k, v in exc.errors.items())
        else:
            messages.success(request, "Quota saved.")
            return redirect("manage-quotas")
    start, end = quotas.period_bounds()
    usage: dict[tuple[str, Any], QuotaUsage] = {
        (u.subject, u.subject_id): u for u in QuotaUsage.objects.filter(period_start=start)
    }
    limits = list(QuotaLimit.objects.select_related("user", "project").order_by("scope", "id"))
    defaults = {
        row.scope: row for row in limits if row.scope in (QuotaScope.USER_DEFAULT, QuotaScope.PROJECT_DEFAULT)
    }
    overrides = []
    for row in limits:
        if row.scope == QuotaScope.USER and row.user is not None:
            used = usage.get(("user", row.user_id))
            overrides.append({"limit": row, "who": f"user {row.user.get_username()}", "used": used})
        elif row.scope == QuotaScope.PROJECT and row.project is not None:
            used = usage.get(("project", row.project_id))
            overrides.append({"limit": row, "who": f"project {row.project.name}", "used": used})
    return render(
        request,
        "manage/quotas.html",
        {
            "period_start": start,
            "period_end": end,
            "period": settings.STUDIO_QUOTA_PERIOD,
            "default_forms": [
                (
                    QuotaScope.USER_DEFAULT.value,
                    defaults.get(QuotaScope.USER_DEFAULT),
                    "Default for every user",
                ),
                (
                    QuotaScope.PROJECT_DEFAULT.value,
                    defaults.get(QuotaScope.PROJECT_DEFAULT),
                    "Default for every project",
                ),
            ],
            "overrides": overrides,
            "errors": errors,
            "post": request.POST if errors else {},
        },
        status=400 if errors else 200,
    )


def _apply(request: HttpRequest, form: str) -> None:
    ip = client_ip(request)
    actor = request.user
    if form == "clear":
        limit_id = request.POST.get("limit_id", "")
        if not limit_id.isdigit():
            raise ServiceError("No such override.")
        quotas.do_clear_limit(actor, int(limit_id), ip=ip)
        return
    body = quotas.parse_limit_form(request.POST)
    if form in (QuotaScope.USER_DEFAULT, QuotaScope.PROJECT_DEFAULT):
        quotas.do_set_limits(actor, form, body, ip=ip)
    elif form == QuotaScope.USER:
        name = request.POST.get("username", "").strip()
        user = get_user_model().objects.filter(username=name).first()
        if user is None:
            raise ServiceError("No user has that name.", {"username": ["No user has that name."]})
        quotas.do_set_limits(actor, QuotaScope.USER, body, user=user, ip=ip)
    elif form == QuotaScope.PROJECT:
        slug = request.POST.get("project", "").strip()
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise ServiceError("No project has that address.", {"project": ["No project has that address."]})
        quotas.do_set_limits(actor, QuotaScope.PROJECT, body, project=project, ip=ip)
    else:
        raise ServiceError("Unknown form.")
