"""``/api/v1/`` operations for models and jobs, and the workers that run them (site admins)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from django.http import Http404, HttpRequest, HttpResponse
from ninja import Body, Query, Status
from pydantic import Field

from studio.api import visible_project
from studio.audit import client_ip
from studio.boundary import StudioRouter, answers, guarded, no_content
from studio.errors import NotAllowed
from studio.fields import Slug
from studio.pagination import keyset_page
from studio.permissions import can_generate, projects_visible_to
from studio.shortcuts import get_visible_or_404

from . import fleet, library, services, styles
from .engine import registry
from .models import Job, Style
from .permissions import (
    can_cancel,
    can_manage_annotators,
    can_manage_styles,
    can_see_workers,
    jobs_visible_to,
    styles_visible_to,
)
from .schemas import (
    AnnotatorId,
    AnnotatorIn,
    AnnotatorOut,
    JobOut,
    JobPage,
    JobPageQuery,
    JobRequest,
    ModelOut,
    StyleCopyIn,
    StyleIn,
    StyleOut,
    StylePatch,
    WorkersOut,
)
from .serializers import job_to_dict

PAGE_SIZE = 25

router = StudioRouter(tags=["generation"])


def visible_job(request: HttpRequest, id: uuid.UUID, **_: Any) -> Job:
    """Guard: a job of a project the caller sees, else 404."""
    return get_visible_or_404(jobs_visible_to(request.user).select_related("project", "created_by"), id=id)


def generating_project(request: HttpRequest, slug: str, **_: Any) -> Any:
    """Guard for submitting: a visible project where the caller may generate (not a viewer)."""
    project = visible_project(request, slug)
    if not can_generate(request.user, project):
        raise NotAllowed("Viewers cannot generate in this project.")
    return project


def cancellable_job(request: HttpRequest, id: uuid.UUID, **_: Any) -> Job:
    job = visible_job(request, id)
    if not can_cancel(request.user, job):
        raise NotAllowed("Only the job's author, the project's leads and admins may cancel it.")
    return job


def workers_area(request: HttpRequest, **_: Any) -> None:
    """Guard: the workers are part of the admin area; for anyone but a site admin they do not exist."""
    if not can_see_workers(request.user):
        raise Http404


@router.get("/models", response=answers({200: list[ModelOut]}), url_name="api-models")
def models(request: HttpRequest) -> list[dict[str, Any]]:
    """The installed models with their defaults, limits, schedulers, modes and LoRAs."""
    return [m.public() for m in registry.list_models()]


@router.get(
    "/projects/{slug:slug}/jobs",
    response=answers({200: JobPage}, 400, 404),
    guard=visible_project,
    url_name="api-project-jobs",
)
def list_jobs(request: HttpRequest, slug: Slug, page: Query[JobPageQuery]) -> dict[str, Any]:
    """The project's jobs, newest first, with their images."""
    queryset = guarded(request).jobs.select_related("project", "created_by")
    rows, next_cursor = keyset_page(queryset, page.cursor, PAGE_SIZE)
    return {"results": [job_to_dict(j, with_assets=True) for j in rows], "next": next_cursor}


@router.post(
    "/projects/{slug:slug}/jobs",
    response=answers({201: JobOut}, 400, 404, 413, 429),
    guard=generating_project,
)
def create_job(request: HttpRequest, slug: Slug, payload: Body[JobRequest]) -> Status:
    """Queue a job; the answer carries every parameter as it will be used, the seed included. 429 when the
    author's or the project's quota has no room (the sentence says used, limit and reset)."""
    job = services.do_create_job(request.user, guarded(request), payload, ip=client_ip(request))
    return Status(201, job_to_dict(job))


@router.get("/jobs/{uuid:id}", response=answers({200: JobOut}, 404), guard=visible_job, url_name="api-job")
def job_detail(request: HttpRequest, id: uuid.UUID) -> dict[str, Any]:
    return job_to_dict(guarded(request), with_assets=True)


@router.post(
    "/jobs/{uuid:id}/cancel",
    response=answers({202: JobOut}, 404, 409),
    guard=cancellable_job,
    url_name="api-job-cancel",
)
def job_cancel(request: HttpRequest, id: uuid.UUID) -> Status:
    """Cancel a queued job at once, or a running one within a step; 409 when it has already finished."""
    job = services.do_cancel_job(request.user, guarded(request), ip=client_ip(request))
    return Status(202, job_to_dict(job, with_assets=True))


@router.get(
    "/admin/workers",
    response=answers({200: WorkersOut}, 404),
    guard=workers_area,
    tags=["admin"],
    url_name="api-admin-workers",
)
def workers(request: HttpRequest) -> dict[str, Any]:
    """The live workers by name: host, device and memory, installed and loaded models, the jobs they run
    now with their authors, and their jobs and images of the last hour. A worker that has not published
    its state for three beats (``STUDIO_WORKER_BEAT_SECONDS``) is gone and not listed."""
    return {"workers": fleet.public_workers()}


# --- project styles --

StyleId = Annotated[int, Field(ge=1, le=2**31 - 1)]


def styling_project(request: HttpRequest, slug: str, **_: Any) -> Any:
    """Guard for creating a style: a visible project the caller leads (or any, for a site admin)."""
    project = visible_project(request, slug)
    if not can_manage_styles(request.user, project):
        raise NotAllowed(styles.LEADS_ONLY)
    return project


def visible_style(request: HttpRequest, id: int, **_: Any) -> Style:
    """Guard: a live style of a project the caller sees, else 404."""
    return get_visible_or_404(styles_visible_to(request.user).select_related("project", "created_by"), id=id)


def managed_style(request: HttpRequest, id: int, **_: Any) -> Style:
    style = visible_style(request, id)
    if not can_manage_styles(request.user, style.project):
        raise NotAllowed(styles.LEADS_ONLY)
    return style


@router.get(
    "/projects/{slug:slug}/styles",
    response=answers({200: list[StyleOut]}, 404),
    guard=visible_project,
    url_name="api-project-styles",
)
def list_styles(request: HttpRequest, slug: Slug) -> list[dict[str, Any]]:
    """The project's styles by name, each as its current version."""
    return [styles.style_to_dict(s, v) for s, v in styles.project_styles(guarded(request))]


@router.post(
    "/projects/{slug:slug}/styles", response=answers({201: StyleOut}, 400, 404, 409), guard=styling_project
)
def create_style(request: HttpRequest, slug: Slug, payload: StyleIn) -> Status:
    """A new style, version 1 (leads and admins); 400 when the project has a live style of that name."""
    style = styles.do_create_style(request.user, guarded(request), payload, ip=client_ip(request))
    return Status(201, styles.style_to_dict(style))


@router.get(
    "/styles/{int:id}", response=answers({200: StyleOut}, 404), guard=visible_style, url_name="api-style"
)
def style_detail(request: HttpRequest, id: StyleId) -> dict[str, Any]:
    """The style as its current version, with that version's number."""
    return styles.style_to_dict(guarded(request))


@router.patch("/styles/{int:id}", response=answers({200: StyleOut}, 400, 404, 409), guard=managed_style)
def style_edit(request: HttpRequest, id: StyleId, payload: StylePatch) -> dict[str, Any]:
    """Change a style (leads and admins): the fields sent replace the current version's in a new version;
    images made before keep naming the version they used."""
    style = guarded(request)
    version = styles.do_edit_style(request.user, style, payload, ip=client_ip(request))
    style.refresh_from_db()
    return styles.style_to_dict(style, version)


@router.delete("/styles/{int:id}", response=answers({204: None}, 404), guard=managed_style)
def style_delete(request: HttpRequest, id: StyleId) -> HttpResponse:
    """Take a style off the project (leads and admins); its images still name it."""
    styles.do_delete_style(request.user, guarded(request), ip=client_ip(request))
    return no_content()


@router.post(
    "/styles/{int:id}/copy",
    response=answers({201: StyleOut}, 400, 404, 409),
    guard=managed_style,
    url_name="api-style-copy",
)
def style_copy(request: HttpRequest, id: StyleId, payload: StyleCopyIn) -> Status:
    """Copy a style's current version to another project as a new style (a lead of both projects, or an
    admin). 404 for a project the caller does not see, 403 for one they do not lead; reference images stay
    behind (they are the first project's)."""
    target = projects_visible_to(request.user).filter(slug=payload.project).first()
    if target is None:
        raise Http404("No such project.")
    copy = styles.do_copy_style(
        request.user, guarded(request), target, name=payload.name, ip=client_ip(request)
    )
    return Status(201, styles.style_to_dict(copy))


# --- ControlNet annotators (site admins) --


def annotators_area(request: HttpRequest, **_: Any) -> None:
    """Guard: the model library is part of the admin area; for anyone but a site admin it does not exist."""
    if not can_manage_annotators(request.user):
        raise Http404


@router.get(
    "/admin/annotators",
    response=answers({200: list[AnnotatorOut]}, 404),
    guard=annotators_area,
    tags=["admin"],
    url_name="api-admin-annotators",
)
def annotators(request: HttpRequest) -> list[dict[str, Any]]:
    """The installed depth and pose annotators, by name; a ControlNet's "depth" and "pose" preprocessors run
    the newest of their kind."""
    return [a.public() for a in registry.list_annotators()]


@router.post(
    "/admin/annotators",
    response=answers({201: AnnotatorOut}, 404),
    guard=annotators_area,
    tags=["admin"],
)
def annotator_install(request: HttpRequest, payload: Body[AnnotatorIn]) -> Status:
    """Install an annotator from a folder on the server: a transformers folder whose config.json has the model
    type dpt or depth_anything (depth) or vitpose (pose), with safetensors weights; a folder holding pickle
    weights is refused (400, saying why)."""
    done = library.do_install_annotator(request.user, payload.path, payload.name, ip=client_ip(request))
    installed = registry.get_annotator(done.id)
    if installed is None:  # removed again between the install and this answer
        raise Http404
    return Status(201, installed.public())


@router.delete(
    "/admin/annotators/{annotator_id}",
    response=answers({204: None}, 404),
    guard=annotators_area,
    tags=["admin"],
    url_name="api-admin-annotator",
)
def annotator_remove(request: HttpRequest, annotator_id: AnnotatorId) -> HttpResponse:
    """Remove an installed annotator; its kind then runs the previous one, or is not offered."""
    library.do_remove(request.user, "annotator", annotator_id, ip=client_ip(request))
    return no_content()
