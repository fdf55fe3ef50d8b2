"""The generate page (a project's home), the job page, and Manage → Workers."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from gallery.models import Asset
from gallery.permissions import assets_visible_to
from studio import permissions as studio_permissions
from studio import quotas
from studio.shortcuts import get_visible_or_404

from . import fleet, library
from .engine import registry
from .permissions import can_cancel, can_see_workers, jobs_visible_to
from .schemas import MAX_CONTROLNET_UNITS, MODE_LABELS, PREPROCESSOR_LABELS, SizedFields
from .serializers import job_to_dict
from .services import UPSCALE_FACTORS, VARIATION_STRENGTH
from .styles import project_styles, style_to_dict

# Form fields a reproduced asset fills in: all of a job's parameters but the batch size and those of the
# image-based modes (a start image is chosen on the page).
REPRODUCIBLE = sorted(set(SizedFields.model_fields) - {"num_images"})
# Start-image choices the generate page offers: the project's latest images.
START_IMAGE_CHOICES = 24


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
            _prefill_mode_of(request, project, source, initial)
            if source.params.get("references"):  # (the reference images of the project, as they were used)
                keep = ("image", "kind", "weight", "fidelity")
                initial["references"] = [{k: r.get(k) for k in keep} for r in source.params["references"]]
            _prefill_controlnets(request, project, source, initial)
    start_image_note = ""
    init_id = request.GET.get("init")
    if init_id:
        start_image_note = _prefill_start_image(request, project, init_id, initial)
    recent = project.jobs.select_related("project", "created_by")[:10]
    can_generate = studio_permissions.can_generate(request.user, project)
    choices = (
        list(assets_visible_to(request.user).filter(project=project)[:START_IMAGE_CHOICES])
        if can_generate
        else []
    )
    styles_context = _styles_context(project)
    if can_generate:
        choices += _style_control_images(request.user, project, styles_context["styles_json"], choices)
    return render(
        request,
        "generation/generate.html",
        {
            "project": project,
            "role": studio_permissions.role_in(request.user, project),
            "can_generate": can_generate,
            "reproducing": bool(source_id and initial.get("prompt") is not None and not init_id),
            "start_image_note": start_image_note,
            "start_images_json": json.dumps([start_image_to_dict(a) for a in choices]),
            "models_json": json.dumps([m.public() for m in models]),
            "mode_labels_json": json.dumps(MODE_LABELS),
            "default_model": default.id if default else "",
            "initial_json": json.dumps(initial),
            "max_controlnets": MAX_CONTROLNET_UNITS,
            "preprocessors": [
                (key, label)
                for key, label in PREPROCESSOR_LABELS.items()
                if key in library.available_preprocessors()
            ],
            "recent_jobs": recent,
            "quota_text": quotas.remaining_text(request.user, project),
            **styles_context,
        },
    )


def _style_control_images(user: Any, project: Any, styles_json: str, shown: list[Asset]) -> list[Asset]:
    """The control images the project's styles' ControlNet units name, where the image choices do not hold
    them already (the form fills a style's units in with them)."""
    wanted = {
        str(unit["image"])
        for style in json.loads(styles_json)
        for unit in style["controlnet_defaults"]
        if unit.get("image")
    } - {str(a.id) for a in shown}
    if not wanted:
        return []
    return list(assets_visible_to(user).filter(project=project, id__in=wanted))


def _styles_context(project: Any) -> dict[str, Any]:
    """The project's styles for the generate page's picker (generation/styles.js)."""
    rows = [style_to_dict(s, v) for s, v in project_styles(project)]
    return {"has_styles": bool(rows), "styles_json": json.dumps(rows, default=str)}


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


@login_required
@require_GET
def workers_page(request: HttpRequest) -> HttpResponse:
    """Manage → Workers: every live worker's state, then kept up to date over ``ws/workers/``
    (``static/generation/workers.js``). Part of the admin area: 404 for anyone but a site admin."""
    if not can_see_workers(request.user):
        raise Http404
    now = time.time()
    beat = settings.STUDIO_WORKER_BEAT_SECONDS
    rows = [
        {"worker": worker, **heartbeat(worker["last_heartbeat"], now, beat)}
        for worker in fleet.public_workers()
    ]
    context = {"section": "workers", "rows": rows, "beat": beat, "gone_after": 3 * beat, "now": now}
    return render(request, "generation/workers.html", context)


def heartbeat(at: float | None, now: float, beat: float) -> dict[str, Any]:
    """How long ago a worker last published (``3 s ago``), and whether it is gone: silent for three beats,
    as its state key's lifetime says. workers.js says the same in the browser."""
    if at is None:
        return {"ago": "never", "gone": True, "iso": ""}
    seconds = max(0, round(now - at))
    if seconds < 120:
        ago = f"{seconds} s ago"
    elif seconds < 7200:
        ago = f"{seconds // 60} min ago"
    else:
        ago = f"{seconds // 3600} h ago"
    iso = dt.datetime.fromtimestamp(at, tz=dt.UTC).isoformat()
    return {"ago": ago, "gone": now - at > 3 * beat, "iso": iso}


def start_image_to_dict(asset: Asset) -> dict[str, Any]:
    """What the generate page's start-image chooser needs of an image."""
    return {
        "id": str(asset.id),
        "kind": asset.kind,
        "width": asset.width,
        "height": asset.height,
        "prompt": asset.prompt,
        "negative_prompt": asset.negative_prompt,
        "image_url": reverse("asset-image", args=[asset.id]),
        "thumbnail_url": reverse("asset-thumb", args=[asset.id]),
        "page_url": reverse("asset", args=[asset.id]),
    }


def _prefill_mode_of(request: HttpRequest, project: Any, source: Asset, initial: dict[str, Any]) -> None:
    """Reproducing an image made from another: the same mode and start image, while it still exists (an
    inpainting's mask is painted again)."""
    mode = source.params.get("mode", "txt2img")
    if mode == "txt2img" or mode not in MODE_LABELS or not source.parent_id:
        return
    parent = assets_visible_to(request.user).filter(project=project, id=source.parent_id).first()
    if parent is None:
        return
    initial["mode"] = mode
    initial["init_asset"] = start_image_to_dict(parent)
    for key in ("strength", "variation", "scale", "extend", "aspect"):
        if source.params.get(key) is not None:
            initial[key] = source.params[key]
    if mode in ("upscale", "outpaint"):
        initial.pop("width", None)
        initial.pop("height", None)


def _prefill_controlnets(request: HttpRequest, project: Any, source: Asset, initial: dict[str, Any]) -> None:
    """Reproducing an image steered by ControlNets: the same units, with their control images while they
    still exist."""
    units = source.params.get("controlnets") or []
    wanted = [u.get("image") for u in units if u.get("image")]
    if not wanted:
        return
    images = {
        str(a.id): start_image_to_dict(a)
        for a in assets_visible_to(request.user).filter(project=project, id__in=wanted)
    }
    initial["controlnets"] = [
        {
            **{k: u.get(k) for k in ("id", "preprocessor", "weight", "start", "end")},
            "image": images.get(str(u.get("image"))),
        }
        for u in units
    ]


def _prefill_start_image(request: HttpRequest, project: Any, init_id: str, initial: dict[str, Any]) -> str:
    """Fill the form from an asset page's "Use as start image", "Inpaint", "Extend canvas", "Vary" or
    "Upscale" link (``?init=<asset>&mode=…&variation=…&scale=…``). Returns a note when the image is not
    available."""
    start = None
    if _is_uuid(init_id):
        start = assets_visible_to(request.user).filter(project=project, id=init_id).first()
    if start is None:
        return "That start image is not available in this project; choose another."
    mode = request.GET.get("mode", "img2img")
    initial["mode"] = mode if mode in MODE_LABELS and mode != "txt2img" else "img2img"
    initial["init_asset"] = start_image_to_dict(start)
    if request.GET.get("variation") in VARIATION_STRENGTH:
        initial["variation"] = request.GET["variation"]
    if request.GET.get("scale", "").isdigit() and int(request.GET["scale"]) in UPSCALE_FACTORS:
        initial["scale"] = int(request.GET["scale"])
    if start.prompt and "prompt" not in initial:
        initial["prompt"] = start.prompt
        if start.negative_prompt:
            initial["negative_prompt"] = start.negative_prompt
    return ""


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
