"""``/api/v1/`` endpoints for models and jobs."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from studio.api_utils import api, json_body
from studio.audit import client_ip
from studio.pagination import keyset_page
from studio.permissions import projects_visible_to
from studio.shortcuts import get_visible_or_404

from . import services
from .engine import registry
from .permissions import jobs_visible_to
from .serializers import job_to_dict

PAGE_SIZE = 25


def _job_or_404(request: HttpRequest, job_id: str) -> Any:
    return get_visible_or_404(
        jobs_visible_to(request.user).select_related("project", "created_by"), id=job_id
    )


@api(["GET"])
def models(request: HttpRequest) -> tuple[int, Any]:
    return 200, [m.public() for m in registry.list_models()]


@api(["GET", "POST"])
def project_jobs(request: HttpRequest, slug: str) -> tuple[int, Any]:
    project = get_object_or_404(projects_visible_to(request.user), slug=slug)
    if request.method == "POST":
        job = services.do_create_job(request.user, project, json_body(request), ip=client_ip(request))
        return 201, job_to_dict(job)
    queryset = project.jobs.select_related("project", "created_by")
    page, next_cursor = keyset_page(queryset, request.GET.get("cursor"), PAGE_SIZE)
    return 200, {"results": [job_to_dict(j, with_assets=True) for j in page], "next": next_cursor}


@api(["GET"])
def job_detail(request: HttpRequest, job_id: str) -> tuple[int, Any]:
    return 200, job_to_dict(_job_or_404(request, job_id), with_assets=True)


@api(["POST"])
def job_cancel(request: HttpRequest, job_id: str) -> tuple[int, Any]:
    job = services.do_cancel_job(request.user, _job_or_404(request, job_id), ip=client_ip(request))
    return 202, job_to_dict(job, with_assets=True)
