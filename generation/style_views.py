"""Project styles' pages: the list (every member) and the create, edit and delete forms (leads and admins).

The forms send what the API takes, through the same types and services (``StyleIn``, ``StylePatch``,
``generation/styles.py``), so a page and ``/api/v1/.../styles`` never disagree."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from studio import permissions as studio_permissions
from studio.audit import client_ip
from studio.boundary import validate
from studio.errors import NotAllowed, ServiceError
from studio.models import Project
from studio.shortcuts import get_visible_or_404

from . import styles
from .engine import registry
from .models import STYLE_FIELDS, Style
from .permissions import can_manage_styles, styles_visible_to
from .schemas import StyleIn, StylePatch


def _form_data(post: Any) -> dict[str, Any]:
    """The API's body from the form: LoRAs as ``id:weight`` lines, reference image ids one a line."""
    loras = []
    for line in post.get("loras", "").splitlines():
        if line.strip():
            lora_id, _, weight = line.strip().partition(":")
            try:
                loras.append({"id": lora_id.strip(), "weight": float(weight) if weight.strip() else 1.0})
            except ValueError:
                loras.append({"id": lora_id.strip(), "weight": weight.strip()})
    return {
        "name": post.get("name", ""),
        "prompt_prefix": post.get("prompt_prefix", ""),
        "prompt_suffix": post.get("prompt_suffix", ""),
        "negative_prompt": post.get("negative_prompt", ""),
        "model": post.get("model") or None,
        "loras": loras,
        "references": [r.strip() for r in post.get("references", "").split() if r.strip()],
        "locks": [f for f in STYLE_FIELDS if post.get(f"lock_{f}")],
    }


def _page(
    request: HttpRequest,
    project: Project,
    *,
    style: Style | None = None,
    form: dict[str, Any] | None = None,
    error: ServiceError | None = None,
) -> HttpResponse:
    can_manage = can_manage_styles(request.user, project)
    return render(
        request,
        "generation/styles.html",
        {
            "project": project,
            "role": studio_permissions.role_in(request.user, project),
            "rows": styles.project_styles(project),
            "can_manage": can_manage,
            "editing": style,
            "form": form or {},
            "lock_fields": [(f, styles.FIELD_WORDS[f]) for f in STYLE_FIELDS],
            "models": registry.list_models(),
            "error": error.message if error else "",
            "errors": error.errors if error else {},
        },
        status=error.status if error else 200,
    )


def _form_of(style: Style) -> dict[str, Any]:
    data = styles.style_to_dict(style)
    return {
        **data,
        "loras_text": "\n".join(f"{lo['id']}:{lo['weight']:g}" for lo in data["loras"]),
        "references_text": "\n".join(str(r) for r in data["references"]),
    }


def _posted_form(post: Any) -> dict[str, Any]:
    data = _form_data(post)
    return {**data, "loras_text": post.get("loras", ""), "references_text": post.get("references", "")}


@login_required
@require_http_methods(["GET", "POST"])
def project_styles(request: HttpRequest, slug: str) -> HttpResponse:
    """The project's styles; a lead's POST creates one."""
    project = get_object_or_404(studio_permissions.projects_visible_to(request.user), slug=slug)
    if request.method == "GET":
        return _page(request, project)
    try:
        if not can_manage_styles(request.user, project):
            raise NotAllowed(styles.LEADS_ONLY)
        payload = validate(StyleIn, _form_data(request.POST))
        style = styles.do_create_style(request.user, project, payload, ip=client_ip(request))
    except ServiceError as exc:
        return _page(request, project, form=_posted_form(request.POST), error=exc)
    messages.success(request, f"Style “{style.name}” created.")
    return redirect("project-styles", slug=project.slug)


@login_required
@require_http_methods(["GET", "POST"])
def style_page(request: HttpRequest, style_id: int) -> HttpResponse:
    """One style's form; a lead's POST saves it as a new version."""
    style = get_visible_or_404(styles_visible_to(request.user).select_related("project"), id=style_id)
    if request.method == "GET":
        return _page(request, style.project, style=style, form=_form_of(style))
    try:
        if not can_manage_styles(request.user, style.project):
            raise NotAllowed(styles.LEADS_ONLY)
        payload = validate(StylePatch, _form_data(request.POST))
        version = styles.do_edit_style(request.user, style, payload, ip=client_ip(request))
    except ServiceError as exc:
        return _page(request, style.project, style=style, form=_posted_form(request.POST), error=exc)
    messages.success(request, f"Style saved (version {version.number}).")
    return redirect("project-styles", slug=style.project.slug)


@login_required
@require_POST
def style_delete(request: HttpRequest, style_id: int) -> HttpResponse:
    style = get_visible_or_404(styles_visible_to(request.user).select_related("project"), id=style_id)
    try:
        styles.do_delete_style(request.user, style, ip=client_ip(request))
    except ServiceError as exc:
        return _page(request, style.project, error=exc)
    messages.success(request, f"Style “{style.name}” deleted.")
    return redirect("project-styles", slug=style.project.slug)
