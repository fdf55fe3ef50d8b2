"""Project settings: the members table. Every member sees it; leads and admins change it."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from . import permissions, services
from .audit import client_ip
from .errors import InvalidInput, ServiceError
from .models import Membership, Project, Role

ROLE_ORDER = {role: i for i, role in enumerate(Role.values)}


def _apply(request: HttpRequest, project: Project, action: str, username: str, role: str) -> str:
    """Run one members form through its service; the success message."""
    ip = client_ip(request)
    if action == "add":
        membership = services.do_add_member(request.user, project, username, role, ip=ip)
        return f"{membership.user.get_username()}’s role in {project.name} is now {membership.role}."
    if action == "role":
        membership = services.do_change_role(request.user, project, username, role, ip=ip)
        return f"{membership.user.get_username()}’s role in {project.name} is now {membership.role}."
    if action == "remove":
        services.do_remove_member(request.user, project, username, ip=ip)
        return f"{username} was removed from {project.name}."
    if action == "retention":
        services.do_set_retention(request.user, project, request.POST.get("retention_days"), ip=ip)
        if project.retention_days is None:
            return f"{project.name} keeps its images until someone deletes them."
        return (
            f"{project.name} now deletes drafts and rejected images after {project.retention_days} "
            f"day{'s' if project.retention_days != 1 else ''}."
        )
    raise InvalidInput("Unknown action.")


def _members(project: Project, posted: dict[str, str], error: str | None) -> list[dict[str, Any]]:
    """Table rows, leads first. The row a refused change came from is marked, and its select shows the role
    the member still has, so the table never shows a change that did not happen."""
    rows = Membership.objects.filter(project=project).select_related("user")
    members = []
    for m in sorted(rows, key=lambda m: (ROLE_ORDER.get(m.role, 99), m.user.get_username().lower())):
        failed = (
            posted.get("action") in ("role", "remove") and posted.get("username") == m.user.get_username()
        )
        members.append({"membership": m, "error": error if failed else None})
    return members


@login_required
@require_http_methods(["POST"])
def project_delete(request: HttpRequest, slug: str) -> HttpResponse:
    """The settings page's "Delete project": the project's name, typed, confirms it."""
    project = get_object_or_404(permissions.projects_visible_to(request.user), slug=slug)
    try:
        services.do_delete_project(
            request.user, project, request.POST.get("confirm", ""), ip=client_ip(request)
        )
    except ServiceError as exc:
        return _render(request, project, status=exc.status, delete_error=exc.message)
    messages.success(request, f"{project.name} was deleted, with its jobs and images.")
    return redirect("home")


@login_required
@require_http_methods(["GET", "POST"])
def project_settings(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_object_or_404(permissions.projects_visible_to(request.user), slug=slug)
    posted: dict[str, str] = {}
    error, errors, status = None, {}, 200
    if request.method == "POST":
        action = request.POST.get("action", "")
        username = request.POST.get("username", "").strip()
        role = request.POST.get("role", "")
        try:
            message = _apply(request, project, action, username, role)
        except ServiceError as exc:
            # The page answers with the service's status (403 for non-leads, 409 for the last lead) and
            # keeps what was typed; a missing user is a form error here, not a missing page.
            error, errors = exc.message, exc.errors
            status = exc.status if exc.status in (403, 409) else 400
            posted = {
                "action": action,
                "username": username,
                "role": role,
                "retention_days": request.POST.get("retention_days", ""),
            }
        else:
            messages.success(request, message)
            if permissions.projects_visible_to(request.user).filter(pk=project.pk).exists():
                return redirect("project-settings", slug=project.slug)
            return redirect("home")  # a lead who removed themselves
    return _render(request, project, status=status, error=error, errors=errors, posted=posted)


def _render(
    request: HttpRequest,
    project: Project,
    *,
    status: int = 200,
    error: str | None = None,
    errors: dict[str, list[str]] | None = None,
    posted: dict[str, str] | None = None,
    delete_error: str | None = None,
) -> HttpResponse:
    posted = posted or {}
    role = permissions.role_in(request.user, project)
    abilities = permissions.settings_page_abilities(role)
    can_delete = abilities["can_delete"]
    return render(
        request,
        "studio/project_settings.html",
        {
            "project": project,
            "role": role,
            **abilities,
            "members": _members(project, posted, error),
            "roles": Role.choices,
            "error": error,
            "errors": errors or {},
            "posted": posted,
            "contents": services.project_contents(project) if can_delete else {},
            "delete_error": delete_error,
        },
        status=status,
    )
