"""Pages of the team layer: the projects home."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from . import permissions, services
from .audit import client_ip
from .errors import ServiceError


@login_required
@require_http_methods(["GET", "POST"])
def home(request: HttpRequest) -> HttpResponse:
    error = None
    if request.method == "POST":
        try:
            project = services.do_create_project(
                request.user, request.POST.get("name", ""), ip=client_ip(request)
            )
        except ServiceError as exc:
            error = exc.message
        else:
            messages.success(request, f"Project “{project.name}” created.")
            return redirect("project", slug=project.slug)
    roles = permissions.roles_of(request.user)
    projects = [
        {"project": p, "role": roles.get(p.id, "lead")}
        for p in permissions.projects_visible_to(request.user).order_by("name")
    ]
    return render(
        request,
        "studio/home.html",
        {
            "projects": projects,
            "can_create": permissions.can_create_project(request.user),
            "error": error,
            "name": request.POST.get("name", "") if error else "",
        },
        status=400 if error else 200,
    )


@require_GET
def admin_check(request: HttpRequest) -> HttpResponse:
    """For the proxy's auth_request in front of admin-only tools (Flower): 204 for a signed-in site admin,
    403 for everyone else (nginx's auth_request understands 2xx, 401 and 403; it shows people a 404)."""
    if permissions.is_admin(request.user):
        return HttpResponse(status=204)
    return HttpResponse(status=403)


@login_required
@require_GET
def permissions_help(request: HttpRequest) -> HttpResponse:
    rows = [
        (action, [role in allowed for role in permissions.ROLES])
        for action, allowed in permissions.PERMISSION_MATRIX
    ]
    return render(request, "studio/permissions.html", {"roles": permissions.ROLES, "rows": rows})
