"""``/api/v1/`` operations of the team layer (the caller, projects, members, quotas); health checks."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from ninja import Query, Status

from . import permissions, quotas, services
from .audit import client_ip
from .boundary import StudioRouter, answers, error_response, guarded, no_content
from .errors import NotAllowed
from .fields import Slug, Username
from .models import Project, QuotaScope
from .schemas import (
    DeleteProjectQuery,
    MemberIn,
    MemberOut,
    MeOut,
    ProjectIn,
    ProjectOut,
    ProjectQuotaOut,
    QuotaIn,
    QuotaSummaryOut,
    RoleIn,
    UserQuotaOut,
)

router = StudioRouter(tags=["team"])


def project_to_dict(project: Any, role: str | None) -> dict[str, Any]:
    return {"slug": project.slug, "name": project.name, "role": role}


def visible_project(request: HttpRequest, slug: str, **_: Any) -> Project:
    """Guard: a project the caller sees (members, and admins for every project), else 404."""
    return get_object_or_404(permissions.projects_visible_to(request.user), slug=slug)


def member_manager(request: HttpRequest, slug: str, **_: Any) -> Project:
    """Guard: a visible project whose members the caller may change (its leads, admins)."""
    project = visible_project(request, slug)
    if not permissions.can_manage_members(request.user, project):
        raise NotAllowed("Only the project's leads may change its members.")
    return project


def project_deleter(request: HttpRequest, slug: str, **_: Any) -> Project:
    """Guard: a visible project the caller may delete (its leads, admins)."""
    project = visible_project(request, slug)
    if not permissions.can_delete_project(request.user, project):
        raise NotAllowed("Only the project's leads and site admins may delete it.")
    return project


def quota_setter(request: HttpRequest, slug: str, **_: Any) -> Project:
    project = visible_project(request, slug)
    if not permissions.is_admin(request.user):
        raise NotAllowed("Only site admins may set quotas.")
    return project


def admin_user(request: HttpRequest, username: str, **_: Any) -> Any:
    """Guard: for site admins, the named account; for anyone else this does not exist (404)."""
    if not permissions.can_use_admin_area(request.user):
        raise Http404
    return get_object_or_404(get_user_model(), username=username)


@router.get("/me", response=answers({200: MeOut}), url_name="api-me")
def me(request: HttpRequest) -> dict[str, Any]:
    """The caller and the projects they belong to (admins: every project, as lead)."""
    user = request.user
    roles = permissions.roles_of(user)
    projects = permissions.projects_visible_to(user).order_by("name")
    return {
        "username": user.get_username(),
        "is_admin": permissions.is_admin(user),
        "projects": [project_to_dict(p, roles.get(p.id, "lead")) for p in projects],
    }


@router.get("/me/quota", response=answers({200: QuotaSummaryOut}), url_name="api-me-quota")
def me_quota(request: HttpRequest) -> dict[str, Any]:
    """The caller's own quota in the current period (limit null = unlimited)."""
    return quotas.summary(request.user)


@router.get("/projects", response=answers({200: list[ProjectOut]}), url_name="api-projects")
def list_projects(request: HttpRequest) -> list[dict[str, Any]]:
    """Projects the caller belongs to (admins: all)."""
    roles = permissions.roles_of(request.user)
    visible = permissions.projects_visible_to(request.user).order_by("name")
    return [project_to_dict(p, roles.get(p.id, "lead")) for p in visible]


@router.post("/projects", response=answers({201: ProjectOut}, 400))
def create_project(request: HttpRequest, payload: ProjectIn) -> Status:
    """A new project with the caller as its lead; its slug is made from the name."""
    project = services.do_create_project(request.user, payload.name, ip=client_ip(request))
    return Status(201, project_to_dict(project, "lead"))


@router.delete(
    "/projects/{slug:slug}",
    response=answers({204: None}, 404),
    guard=project_deleter,
    url_name="api-project",
)
def delete_project(request: HttpRequest, slug: Slug, query: Query[DeleteProjectQuery]) -> HttpResponse:
    """Delete the project and everything in it: its jobs, images, thumbnails, masks and boards leave storage;
    one audit event remains. ``confirm`` must be the project's slug (or name), typed out."""
    services.do_delete_project(request.user, guarded(request), query.confirm, ip=client_ip(request))
    return no_content()


@router.post(
    "/projects/{slug:slug}/members",
    response=answers({201: MemberOut}, 400, 404, 409),
    guard=member_manager,
    url_name="api-project-members",
)
def add_member(request: HttpRequest, slug: Slug, payload: MemberIn) -> Status:
    """Add an active user (by username or email) with a role, or change the role of one already in."""
    membership = services.do_add_member(
        request.user, guarded(request), payload.username, payload.role, ip=client_ip(request)
    )
    return Status(201, {"username": membership.user.username, "role": membership.role, "project": slug})


@router.patch(
    "/projects/{slug:slug}/members/{username}",
    response=answers({200: MemberOut}, 400, 404, 409),
    guard=member_manager,
    url_name="api-project-member",
)
def change_member(request: HttpRequest, slug: Slug, username: Username, payload: RoleIn) -> dict[str, Any]:
    """Change a member's role; 409 when it would leave the project without a lead."""
    membership = services.do_change_role(
        request.user, guarded(request), username, payload.role, ip=client_ip(request)
    )
    return {"username": membership.user.username, "role": membership.role, "project": slug}


@router.delete(
    "/projects/{slug:slug}/members/{username}",
    response=answers({204: None}, 404, 409),
    guard=member_manager,
)
def remove_member(request: HttpRequest, slug: Slug, username: Username) -> HttpResponse:
    """Remove a member; 409 for the project's last lead."""
    services.do_remove_member(request.user, guarded(request), username, ip=client_ip(request))
    return no_content()


@router.put(
    "/projects/{slug:slug}/quota",
    response=answers({200: ProjectQuotaOut}, 400, 404),
    guard=quota_setter,
    url_name="api-project-quota",
)
def set_project_quota(request: HttpRequest, slug: Slug, payload: QuotaIn) -> dict[str, Any]:
    """The project's own limits per period (site admins); null = unlimited."""
    project = guarded(request)
    limit = quotas.do_set_limits(
        request.user, QuotaScope.PROJECT, payload.model_dump(), project=project, ip=client_ip(request)
    )
    return {"project": project.slug, **quotas.limits_to_dict(limit)}


@router.put(
    "/admin/users/{username}/quota",
    response=answers({200: UserQuotaOut}, 400, 404),
    guard=admin_user,
    url_name="api-admin-user-quota",
)
def set_user_quota(request: HttpRequest, username: Username, payload: QuotaIn) -> dict[str, Any]:
    """One user's own limits per period (site admins); null = unlimited."""
    user = guarded(request)
    limit = quotas.do_set_limits(
        request.user, QuotaScope.USER, payload.model_dump(), user=user, ip=client_ip(request)
    )
    return {"username": user.get_username(), **quotas.limits_to_dict(limit)}


# --- outside the API: health checks and unknown paths --


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Database, broker and channel layer reachable, and at least one worker answering a ping.
    ``?workers=0``: the web tier's own readiness (a load balancer's probe), which no worker decides."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from .celery import app

    checks: dict[str, Any] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"error: {exc.__class__.__name__}"
    try:
        layer = get_channel_layer()
        async_to_sync(layer.group_send)("studio.readyz", {"type": "studio.ping"})
        checks["channel_layer"] = "ok"
    except Exception as exc:
        checks["channel_layer"] = f"error: {exc.__class__.__name__}"
    need_worker = request.GET.get("workers") != "0"
    workers = 0
    if checks["broker"] == "ok" and need_worker:
        try:
            workers = len(app.control.ping(timeout=1.0) or [])
        except Exception:
            workers = 0
    checks["workers"] = workers if need_worker else "not checked"
    ready = all(checks[k] == "ok" for k in ("database", "broker", "channel_layer")) and (
        workers > 0 or not need_worker
    )
    return JsonResponse(checks, status=200 if ready else 503)


def api_not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    return error_response(404, "No such API endpoint.")


def sdapi_not_served(request: HttpRequest, path: str = "") -> HttpResponse:
    message = (
        f"/sdapi/{path} is not served by this studio (the README lists what the AUTOMATIC1111 API serves)."
    )
    return error_response(404, message, extra={"detail": message})
