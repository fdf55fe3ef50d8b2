"""``/api/v1/`` endpoints of the team layer, health checks, and answers for parts not offered yet."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import get_object_or_404

from . import permissions, quotas, services
from .api_utils import api, error_response, json_body
from .audit import client_ip
from .errors import InvalidInput, NotAllowed
from .models import QuotaScope
from .openapi import schema


def project_to_dict(project: Any, role: str | None) -> dict[str, Any]:
    return {"slug": project.slug, "name": project.name, "role": role}


@api(["GET"])
def openapi(request: HttpRequest) -> tuple[int, Any]:
    return 200, schema()


@api(["GET"])
def me(request: HttpRequest) -> tuple[int, Any]:
    user = request.user
    roles = permissions.roles_of(request.user)
    projects = permissions.projects_visible_to(user).order_by("name")
    return 200, {
        "username": user.username,
        "is_admin": permissions.is_admin(user),
        "projects": [project_to_dict(p, roles.get(p.id, "lead")) for p in projects],
    }


@api(["GET", "POST"])
def projects(request: HttpRequest) -> tuple[int, Any]:
    if request.method == "POST":
        project = services.do_create_project(
            request.user, json_body(request).get("name"), ip=client_ip(request)
        )
        return 201, project_to_dict(project, "lead")
    roles = permissions.roles_of(request.user)
    visible = permissions.projects_visible_to(request.user).order_by("name")
    return 200, [project_to_dict(p, roles.get(p.id, "lead")) for p in visible]


@api(["POST"])
def project_members(request: HttpRequest, slug: str) -> tuple[int, Any]:
    project = get_object_or_404(permissions.projects_visible_to(request.user), slug=slug)
    body = json_body(request)
    membership = services.do_add_member(
        request.user, project, body.get("username"), body.get("role"), ip=client_ip(request)
    )
    return 201, {"username": membership.user.username, "role": membership.role, "project": project.slug}


@api(["POST"])
def project_uploads(request: HttpRequest, slug: str) -> tuple[int, Any]:
    """Multipart ``image`` → 201 the new asset (kind ``upload``): a start image for the generation modes."""
    from gallery.serializers import asset_to_dict
    from gallery.services import check_upload, do_upload_image

    project = get_object_or_404(permissions.projects_visible_to(request.user), slug=slug)
    check_upload(request.user, project)
    try:
        file = request.FILES.get("image")
    except (MultiPartParserError, SuspiciousOperation) as exc:
        raise InvalidInput(
            "The upload could not be read; send the file as multipart form data in the field “image”.",
            {"image": ["Send one image file."]},
        ) from exc
    asset = do_upload_image(request.user, project, file, ip=client_ip(request))
    return 201, asset_to_dict(asset)


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


def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    return error_response(404, "No such API endpoint.")


@api(["GET"])
def me_quota(request: HttpRequest) -> tuple[int, Any]:
    return 200, quotas.summary(request.user)


@api(["PUT"])
def admin_user_quota(request: HttpRequest, username: str) -> tuple[int, Any]:
    if not permissions.is_admin(request.user):
        raise Http404
    user = get_object_or_404(get_user_model(), username=username)
    limit = quotas.do_set_limits(
        request.user, QuotaScope.USER, json_body(request), user=user, ip=client_ip(request)
    )
    return 200, {"username": user.get_username(), **quotas.limits_to_dict(limit)}


@api(["PUT"])
def project_quota(request: HttpRequest, slug: str) -> tuple[int, Any]:
    project = get_object_or_404(permissions.projects_visible_to(request.user), slug=slug)
    if not permissions.is_admin(request.user):
        raise NotAllowed("Only site admins may set quotas.")
    limit = quotas.do_set_limits(
        request.user, QuotaScope.PROJECT, json_body(request), project=project, ip=client_ip(request)
    )
    return 200, {"project": project.slug, **quotas.limits_to_dict(limit)}


@api(["PATCH", "DELETE"])
def project_member(request: HttpRequest, slug: str, username: str) -> Any:
    """PATCH ``{"role"}`` changes a member's role (200); DELETE removes them (204). 409 for the last lead."""
    project = get_object_or_404(permissions.projects_visible_to(request.user), slug=slug)
    if request.method == "DELETE":
        services.do_remove_member(request.user, project, username, ip=client_ip(request))
        return HttpResponse(status=204)
    body = json_body(request)
    membership = services.do_change_role(
        request.user, project, username, body.get("role"), ip=client_ip(request)
    )
    return 200, {"username": membership.user.username, "role": membership.role, "project": project.slug}
