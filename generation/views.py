"""The generate page (a project's home) and the job page."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from gallery.permissions import assets_visible_to
from studio import permissions as studio_permissions
from studio import quotas
from studio.shortcuts import get_visible_or_404

from .engine import registry
from .permissions import can_cancel, jobs_visible_to
from .serializers import job_to_dict
from .services import JOB_FIELDS

# Form fields a reproduced asset fills in: all of a job's parameters but the batch size and mode.
REPRODUCIBLE = sorted(JOB_FIELDS - {"num_images", "mode"})


@login_required
@require_GET
def project_generate(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_object_or_404(studio_permissions.projects_visible_to(request.user), slug=slug)
    models = registry.list_models()
    default = registry.default_model()
    initial: dict = {}
    source_id = request.GET.get("from")
    if source_id and _is_uuid(source_id):
        source = assets_visible_to(request.user).filter(project=project, id=source_id).first()
        if source is not None:
            initial = {k: source.params[k] for k in REPRODUCIBLE if k in source.params}
            initial["num_images"] = 1
            if request.GET.get("remix"):
                # Remix: the same prompt and parameters with a fresh random seed (Reproduce keeps it).
                initial.pop("seed", None)
    recent = project.jobs.select_related("project", "created_by")[:10]
    return render(
        request,
        "generation/generate.html",
        {
            "project": project,
            "role": studio_permissions.role_in(request.user, project),
            "can_generate": studio_permissions.can_generate(request.user, project),
            "models_json": json.dumps([m.public() for m in models]),
            "default_model": default.id if default else "",
            "initial_json": json.dumps(initial),
            "recent_jobs": recent,
            "quota_text": quotas.remaining_text(request.user, project),
        },
    )


@login_required
@require_GET
def job_page(request: HttpRequest, job_id: str) -> HttpResponse:
    job = get_visible_or_404(jobs_visible_to(request.user).select_related("project", "created_by"), id=job_id)
    return render(
        request,
        "generation/job.html",
        {
            "job": job,
            "project": job.project,
            "role": studio_permissions.role_in(request.user, job.project),
            "can_cancel": can_cancel(request.user, job),
            "job_json": json.dumps(job_to_dict(job, with_assets=True)),
        },
    )


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
