"""Writes for generation jobs: create, cancel, and the worker's side of the lifecycle.

Every state change is one of ``Job``'s conditional transitions; live events and Celery sends happen in
``transaction.on_commit`` so nobody hears of a row that was rolled back.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import math
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone
from PIL import Image

from gallery.serializers import asset_to_dict
from gallery.services import asset_storage, delete_stored_files, do_create_job_assets
from studio import audit, quotas
from studio import permissions as studio_permissions
from studio.errors import Conflict, InvalidInput, NotAllowed
from studio.models import Project

from . import library, metrics, realtime
from .engine import registry
from .engine.families import FAMILIES
from .models import TERMINAL_STATES, Job, JobStatus
from .permissions import can_cancel
from .scheduling import fair_share_order
from .serializers import job_to_dict

logger = logging.getLogger(__name__)

MAX_PROMPT = 2000
MAX_SEED = 2**32 - 1
JOB_FIELDS = {
    "prompt",
    "negative_prompt",
    "model",
    "width",
    "height",
    "steps",
    "guidance_scale",
    "seed",
    "scheduler",
    "num_images",
    "mode",
    "init_asset",
    "mask",
    "strength",
    "variation",
    "scale",
    "loras",
}
# Parts of the job body (shared/API.md) that belong to features this installation does not run yet.
MODE_FIELDS: set[str] = set()


# --- validation --


def _int(value: Any, name: str, lo: int, hi: int, errors: dict[str, list[str]]) -> int | None:
    if isinstance(value, bool):
        value = None
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        errors[name] = ["Enter a whole number."]
        return None
    if not lo <= value <= hi:
        errors[name] = [f"Must be between {lo} and {hi}."]
        return None
    return value


def _float(value: Any, name: str, lo: float, hi: float, errors: dict[str, list[str]]) -> float | None:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errors[name] = ["Enter a number."]
        return None
    if not lo <= value <= hi:
        errors[name] = [f"Must be between {lo:g} and {hi:g}."]
        return None
    return float(value)


def _text(value: Any, name: str, *, required: bool, errors: dict[str, list[str]]) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        errors[name] = ["Enter text."]
        return ""
    value = value.strip()
    if required and not value:
        errors[name] = ["This field is required."]
    elif len(value) > MAX_PROMPT:
        errors[name] = [f"At most {MAX_PROMPT} characters (this has {len(value)})."]
    return value


@dataclass
class JobInputs:
    """What a job body brings besides its parameters: the start image and the cleaned inpainting mask (a
    greyscale PNG of the start image's size, white = repaint), filled in by ``check_job_params``."""

    init_asset: Any = None
    mask_png: bytes | None = None


def check_job_params(
    data: dict[str, Any],
    *,
    user: Any = None,
    project: Project | None = None,
    inputs: JobInputs | None = None,
) -> tuple[registry.ModelInfo, dict[str, Any]]:
    """Validate a job body; return the model and every parameter as it will be used (seed included).

    Every mode but txt2img needs ``user`` and ``project``: the start image must be an image of that project
    the user sees. ``inputs``, when given, receives the start image and the cleaned mask.
    Raises InvalidInput listing every bad field; nothing is stored.
    """
    errors: dict[str, list[str]] = {}
    for key in data:
        if key in MODE_FIELDS:
            if data[key] not in (None, [], ""):
                errors[key] = ["Only text-to-image generation is available on this studio."]
        elif key not in JOB_FIELDS:
            errors[key] = ["Unknown field."]
    mode, init = _check_mode_and_start_image(data, user, project, errors)

    prompt_default = negative_default = ""
    if init is not None and mode in PROMPT_FROM_START_IMAGE:
        prompt_default, negative_default = init.prompt, init.negative_prompt
    prompt = _text(data.get("prompt") or prompt_default, "prompt", required=True, errors=errors)
    negative = _text(
        data.get("negative_prompt") or negative_default, "negative_prompt", required=False, errors=errors
    )

    model_id = data.get("model")
    model = registry.get_model(model_id) if isinstance(model_id, str) and model_id else None
    if model_id in (None, ""):
        model = registry.default_model()
        if model is None:
            raise InvalidInput("No model is installed on this studio.", {"model": ["No model is installed."]})
    elif model is None:
        errors["model"] = ["No such model."]

    params: dict[str, Any] = {"mode": mode, "prompt": prompt, "negative_prompt": negative}
    if model is not None:
        if mode not in model.modes:
            errors["mode"] = [f"{model.name} does not do {MODE_LABELS.get(mode, mode).lower()}."]
        size_defaults = (model.default_width, model.default_height)
        if init is not None and mode != "upscale":
            size_defaults = _fit_size(init.width, init.height, model)
        # An upscale's size is its start image's times the scale (checked with the scale below).
        for dim, default in zip(("width", "height"), size_defaults, strict=True) if mode != "upscale" else ():
            value = _int(data.get(dim, default), dim, model.min_size, model.max_size, errors)
            if value is not None and value % _size_multiple(model):
                errors[dim] = [f"Must be a multiple of {_size_multiple(model)}."]
            params[dim] = value
        scheduler = data.get("scheduler") or model.default_scheduler
        if scheduler not in model.schedulers:
            errors["scheduler"] = [f"Choose one of: {', '.join(model.schedulers)}."]
        params["scheduler"] = scheduler
        params["model"] = model.id
        steps_default, guidance_default = model.default_steps, model.default_guidance
    else:
        steps_default, guidance_default = 20, 5.0
    params["steps"] = _int(data.get("steps", steps_default), "steps", 1, 150, errors)
    params["guidance_scale"] = _float(
        data.get("guidance_scale", guidance_default), "guidance_scale", 0, 30, errors
    )
    seed = data.get("seed")
    params["seed"] = (
        secrets.randbelow(MAX_SEED + 1) if seed in (None, "") else _int(seed, "seed", 0, MAX_SEED, errors)
    )
    params["num_images"] = _int(data.get("num_images", 1), "num_images", 1, 8, errors)
    if mode != "txt2img":
        mask_png = _check_mode_params(data, mode, init, model, params, errors)
        if inputs is not None:
            inputs.init_asset, inputs.mask_png = init, mask_png
    if model is not None and data.get("loras") not in (None, []):
        params["loras"] = library.check_loras(data.get("loras"), model, errors)

    if errors:
        raise InvalidInput("Some fields are invalid: " + ", ".join(sorted(errors)) + ".", errors)
    assert model is not None
    return model, params


# --- generation modes --

MODE_LABELS = {
    "txt2img": "Text to image",
    "img2img": "Image to image",
    "inpaint": "Inpainting",
    "variation": "Variations",
    "upscale": "Upscaling",
}
# How strongly each mode repaints its start image unless the body says (variations: per kind).
DEFAULT_STRENGTH = {"img2img": 0.6, "inpaint": 0.85, "upscale": 0.3}
VARIATION_STRENGTH = {"subtle": 0.3, "strong": 0.6}
UPSCALE_FACTORS = (2, 4)
# Modes whose prompt defaults to the start image's (a variation or an upscale of the same picture).
PROMPT_FROM_START_IMAGE = {"variation", "upscale"}
# Which body fields belong to which modes (besides init_asset, needed by all of them).
FIELD_MODES = {
    "mask": {"inpaint"},
    "strength": {"img2img", "inpaint", "variation", "upscale"},
    "variation": {"variation"},
    "scale": {"upscale"},
}
MASK_PREFIX = "data:image/png;base64,"
MASK_MAX_CHARS = 8 * 1024 * 1024
EMPTY_MASK = "Paint the area to repaint first."
NO_SUCH_ASSET = "No such asset."


def _check_mode_and_start_image(
    data: dict[str, Any], user: Any, project: Project | None, errors: dict[str, list[str]]
) -> tuple[str, Any]:
    """The mode (txt2img when it is unknown: its error is recorded) and the start image it needs: an image
    of the job's project that the user sees. Another project's image, a malformed id and a missing one get
    the same answer, so nothing leaks."""
    from gallery.permissions import assets_visible_to

    mode = data.get("mode") or "txt2img"
    if mode not in MODE_LABELS:
        errors["mode"] = [f"Choose one of: {', '.join(MODE_LABELS)}."]
        mode = "txt2img"
    for key, modes in FIELD_MODES.items():
        if data.get(key) not in (None, "") and mode not in modes:
            errors[key] = [f"Only used for {', '.join(MODE_LABELS[m].lower() for m in sorted(modes))}."]
    raw = data.get("init_asset")
    if mode == "txt2img":
        if raw not in (None, ""):
            errors["init_asset"] = ["Text to image starts from no image; choose another mode."]
        return mode, None
    if raw in (None, ""):
        errors["init_asset"] = ["Choose a start image."]
        return mode, None
    init = None
    if isinstance(raw, str) and user is not None and project is not None:
        try:
            wanted = uuid.UUID(raw)
        except ValueError:
            wanted = None
        if wanted is not None:
            init = assets_visible_to(user).filter(project=project, id=wanted).first()
    if init is None:
        errors["init_asset"] = [NO_SUCH_ASSET]
    return mode, init


def _size_multiple(model: registry.ModelInfo) -> int:
    """What the model's image sides must be multiples of (8; 16 for SD3 and FLUX)."""
    family = FAMILIES.get(model.family)
    return family.size_multiple if family else 8


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def _fit_size(width: int, height: int, model: registry.ModelInfo) -> tuple[int, int]:
    """A start image's size as the default output size: multiples of the model's size multiple within its
    limits, keeping the aspect ratio as far as the limits allow."""
    largest = model.max_size / max(width, height)  # the most it may grow (or must shrink)
    scale = min(1.0, largest)
    if min(width, height) * scale < model.min_size:
        scale = min(largest, model.min_size / min(width, height))
    step = _size_multiple(model)
    w, h = (
        min(model.max_size, max(model.min_size, _round_to(side * scale, step))) for side in (width, height)
    )
    return w, h


def _check_mode_params(
    data: dict[str, Any],
    mode: str,
    init: Any,
    model: registry.ModelInfo | None,
    params: dict[str, Any],
    errors: dict[str, list[str]],
) -> bytes | None:
    """Strength, variation, scale and mask for the image-based modes; records them in ``params`` and returns
    the cleaned mask PNG for inpainting."""
    if init is not None:
        params["init_asset"] = str(init.id)
    default = DEFAULT_STRENGTH.get(mode, 0.6)
    if mode == "variation":
        kind = data.get("variation") or "subtle"
        if kind not in VARIATION_STRENGTH:
            errors["variation"] = [f"Choose one of: {', '.join(VARIATION_STRENGTH)}."]
            kind = "subtle"
        params["variation"] = kind
        default = VARIATION_STRENGTH[kind]
    raw_strength = data.get("strength")
    strength = default if raw_strength in (None, "") else _float(raw_strength, "strength", 0, 1, errors)
    params["strength"] = strength
    steps = params.get("steps")
    if strength is not None and isinstance(steps, int) and "strength" not in errors:
        if int(steps * strength) < 1:
            errors["strength"] = [
                f"Too weak to change anything in {steps} steps: raise the strength or the steps."
            ]
    if mode == "upscale":
        _check_upscale(data, init, model, params, errors)
    mask_png = None
    if mode == "inpaint":
        mask_png = _clean_mask(data.get("mask"), init, errors)
    return mask_png


def _check_upscale(
    data: dict[str, Any],
    init: Any,
    model: registry.ModelInfo | None,
    params: dict[str, Any],
    errors: dict[str, list[str]],
) -> None:
    for dim in ("width", "height"):
        if data.get(dim) not in (None, ""):
            errors[dim] = ["An upscale's size is its start image's size times the scale; leave it out."]
    scale = _int(data.get("scale", 2), "scale", 0, 2**31, errors)
    if scale is not None and scale not in UPSCALE_FACTORS:
        errors["scale"] = [f"Choose one of: {', '.join(map(str, UPSCALE_FACTORS))}."]
        scale = None
    params["scale"] = scale
    if scale is None or init is None or model is None:
        params["width"] = params["height"] = None
        return
    step = _size_multiple(model)
    width, height = _round_to(init.width * scale, step), _round_to(init.height * scale, step)
    params["width"], params["height"] = width, height
    if max(width, height) > model.max_size:
        errors["scale"] = [
            f"Upscaling this {init.width} × {init.height} image ×{scale} gives {width} × {height}; "
            f"{model.name} makes images of at most {model.max_size} × {model.max_size}."
        ]
    elif min(width, height) < model.min_size:
        errors["scale"] = [
            f"Upscaling this {init.width} × {init.height} image ×{scale} gives {width} × {height}; "
            f"{model.name} makes images of at least {model.min_size} × {model.min_size}."
        ]


def _clean_mask(value: Any, init: Any, errors: dict[str, list[str]]) -> bytes | None:
    """The mask as a greyscale PNG of the start image's size, pure black and white (white = repaint).
    Decoded with Pillow from a PNG data URL only; transparency counts as black (keep)."""
    from gallery.services import decode_image, upload_max_pixels

    if value in (None, ""):
        errors["mask"] = [EMPTY_MASK]
        return None
    if not isinstance(value, str) or not value.startswith(MASK_PREFIX):
        errors["mask"] = ["Send the mask as a PNG data URL (data:image/png;base64,…)."]
        return None
    if len(value) > MASK_MAX_CHARS:
        errors["mask"] = ["The mask is too large."]
        return None
    try:
        data = base64.b64decode(value[len(MASK_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        errors["mask"] = ["The mask is not valid base64."]
        return None
    not_readable = "The mask is not a PNG image we can read."
    try:
        image = decode_image(
            data, field="mask", formats=("PNG",), max_pixels=upload_max_pixels(), not_readable=not_readable
        )
    except InvalidInput as exc:
        errors.update(exc.errors or {"mask": [not_readable]})
        return None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (0, 0, 0))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    mask = image.convert("L").point(lambda v: 255 if v >= 128 else 0)
    if init is not None and mask.size != (init.width, init.height):
        mask = mask.resize((init.width, init.height), Image.Resampling.NEAREST)
    if mask.getbbox() is None:
        errors["mask"] = [EMPTY_MASK]
        return None
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def expected_steps(params: dict[str, Any]) -> int:
    """The denoising steps a job will report: all of them from noise, the last ``strength`` share of them
    from a start image."""
    steps = int(params["steps"])
    strength = params.get("strength")
    if params.get("mode", "txt2img") == "txt2img" or strength is None:
        return steps
    return max(1, min(int(steps * float(strength)), steps))


# --- the web side --


def enqueue(job_id: Any, queue: str) -> None:
    """Hand the job to Celery. A broker outage is logged, not raised: the row stays queued and the sweeper
    sends it again."""
    from .tasks import run_job

    try:
        run_job.apply_async(
            args=(str(job_id),),
            queue=queue,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2},
        )
    except Exception:
        logger.exception("Could not enqueue job %s; the sweeper will retry", job_id)


def do_create_job(user: Any, project: Project, data: dict[str, Any], *, ip: str | None = None) -> Job:
    """Validate, store a queued job, and enqueue it once the row is committed."""
    if not studio_permissions.can_generate(user, project):
        raise NotAllowed("Viewers cannot generate in this project.")
    inputs = JobInputs()
    model, params = check_job_params(data, user=user, project=project, inputs=inputs)
    job_id = uuid.uuid4()
    mask_name = ""
    if inputs.mask_png is not None:
        # The worker reads the mask from storage (the job's params name it), never from the request.
        mask_name = asset_storage().save(f"masks/{project.id}/{job_id}.png", ContentFile(inputs.mask_png))
        params["mask"] = mask_name
    try:
        with transaction.atomic():
            job = _create_job_row(user, project, model, params, job_id, ip=ip)
    except Exception:
        delete_stored_files([mask_name])
        raise
    return job


def _create_job_row(
    user: Any,
    project: Project,
    model: registry.ModelInfo,
    params: dict[str, Any],
    job_id: Any,
    *,
    ip: str | None,
) -> Job:
    """Reserve the images against the quotas, store the queued job, audit it, and enqueue it on commit.
    Call inside a transaction."""
    period_start = quotas.reserve(user, project, params["num_images"])
    job = Job.objects.create(
        id=job_id,
        project=project,
        created_by=user,
        model_id=model.id,
        params=params,
        queue=settings.STUDIO_GPU_QUEUE,
        progress_total=expected_steps(params),
        quota_period_start=period_start,
        reserved_images=params["num_images"],
    )
    audit.record(
        user,
        audit.JOB_CREATE,
        target=f"job:{job.id}",
        project=project,
        ip=ip,
        details={
            "model": model.id,
            "num_images": params["num_images"],
            "steps": params["steps"],
            "mode": params["mode"],
        },
    )
    transaction.on_commit(lambda: enqueue(job.id, job.queue))
    transaction.on_commit(
        lambda: realtime.send_project_event(
            project.slug, {"type": realtime.JOB_CREATED, "job": job_to_dict(job)}
        )
    )
    return job


def do_cancel_job(user: Any, job: Job, *, ip: str | None = None) -> Job:
    """Cancel a queued job at once, or ask a running one to stop at its next step."""
    if not can_cancel(user, job):
        raise NotAllowed("Only the job's author, the project's leads and admins may cancel it.")
    if job.status in TERMINAL_STATES:
        raise Conflict(f"The job has already {job.status}.")
    with transaction.atomic():
        if Job.cancel_queued(job.id):
            quotas.settle(job, 0, 0)
            transaction.on_commit(lambda: _announce_finished(job.id))
            transaction.on_commit(lambda: _announce_queue_moved(job.queue))
        elif Job.request_cancel(job.id):
            transaction.on_commit(
                lambda: realtime.cache_quietly(cache.set, realtime.cancel_cache_key(job.id), True, 3600)
            )
        else:
            job.refresh_from_db()
            if job.status in TERMINAL_STATES:
                raise Conflict(f"The job has already {job.status}.")
        audit.record(user, audit.JOB_CANCEL, target=f"job:{job.id}", project=job.project, ip=ip)
    job.refresh_from_db()
    return job


# --- the worker side --


def do_start_job(job_id: Any, worker: str) -> tuple[Job, int] | None:
    """queued → running for this worker: the first job in fair-share order of the named job's queue (usually
    the named job itself). None when nothing is queued there (a duplicate delivery, a cancel)."""
    queue = Job.objects.filter(id=job_id).values_list("queue", flat=True).first()
    if queue is None:
        return None
    for candidate in fair_share_order(queue, limit=50):
        attempt = Job.claim(candidate, worker)
        if attempt is not None:
            job_id = candidate
            break
    else:
        return None
    job = Job.objects.select_related("project", "created_by").get(id=job_id)
    realtime.cache_quietly(cache.delete, realtime.preview_cache_key(job_id))
    running: dict[str, Any] = {
        "type": realtime.STATUS,
        "status": JobStatus.RUNNING,
        "progress": {"step": 0, "total": job.progress_total},
    }
    if job.notice:
        running["notice"] = job.notice
    realtime.send_job_event(job.id, running)
    realtime.send_project_event(job.project.slug, {"type": realtime.JOB_UPDATED, "job": job_to_dict(job)})
    _announce_queue_moved(job.queue)
    return job, attempt


def do_heartbeat(job_id: Any, attempt: int, step: int, total: int) -> bool:
    """Record liveness and progress; returns whether a cancel was requested (or the job is no longer ours)."""
    updated = Job.running(job_id, attempt).update(
        heartbeat_at=timezone.now(), progress_step=step, progress_total=total
    )
    if not updated:
        return True
    return Job.objects.filter(id=job_id, cancel_requested=True).exists()


def cancel_requested_fast(job_id: Any) -> bool:
    """The cancel flag from the cache, read at every step; False while the cache is unreachable (the
    heartbeat thread reads the row's flag too)."""
    return bool(realtime.cache_quietly(cache.get, realtime.cancel_cache_key(job_id)))


def do_complete_job(
    job: Job,
    attempt: int,
    images: list[Any],
    seeds: list[int],
    *,
    gpu_seconds: float,
    model_name: str,
    model_sha256: str,
) -> bool:
    """running → succeeded with its assets, in one transaction. False if the job was no longer this
    attempt's to finish (canceled meanwhile, or handed to another worker)."""
    with transaction.atomic():
        updated = (
            Job.running(job.id, attempt)
            .filter(cancel_requested=False)
            .update(
                status=JobStatus.SUCCEEDED,
                finished_at=timezone.now(),
                gpu_seconds=gpu_seconds,
                progress_step=job.progress_total,
            )
        )
        if not updated:
            return False
        job.refresh_from_db()
        assets = do_create_job_assets(job, images, seeds, model_name=model_name, model_sha256=model_sha256)
        quotas.settle(job, len(assets), gpu_seconds)
        transaction.on_commit(lambda: metrics.record_job_timing(job))
        transaction.on_commit(lambda: _announce_finished(job.id))
        transaction.on_commit(lambda: _announce_assets(job.project.slug, assets))
    return True


def do_finish_job(job_id: Any, attempt: int, status: str, *, error: str = "", gpu_seconds: float = 0) -> bool:
    """running → failed or canceled."""
    with transaction.atomic():
        done = Job.finish(job_id, attempt, status, error=error[:2000], gpu_seconds=gpu_seconds)
        if done:
            job = Job.objects.get(id=job_id)
            quotas.settle(job, 0, gpu_seconds)  # releases the held images
            transaction.on_commit(lambda: metrics.record_job_timing(job))
            transaction.on_commit(lambda: _announce_finished(job_id))
    return done


def _announce_finished(job_id: Any) -> None:
    job = Job.objects.select_related("project", "created_by").get(id=job_id)
    realtime.send_job_event(job.id, terminal_event(job))
    realtime.send_project_event(job.project.slug, {"type": realtime.JOB_UPDATED, "job": job_to_dict(job)})
    realtime.cache_quietly(cache.delete, realtime.cancel_cache_key(job_id))


def _announce_assets(slug: str, assets: list[Any]) -> None:
    for asset in assets:
        realtime.send_project_event(slug, {"type": realtime.ASSET_CREATED, "asset": asset_to_dict(asset)})


def _announce_queue_moved(queue: str) -> None:
    realtime.send(realtime.queue_group(queue), {"type": realtime.QUEUE_MOVED})


def terminal_event(job: Job) -> dict[str, Any]:
    if job.status == JobStatus.SUCCEEDED:
        assets = job.assets.select_related("project", "created_by").order_by("index")
        return {"type": realtime.SUCCEEDED, "assets": [asset_to_dict(a) for a in assets]}
    if job.status == JobStatus.FAILED:
        return {"type": realtime.FAILED, "error": job.error}
    return {"type": realtime.CANCELED}


# --- the sweeper --


# A key kept in Redis (the broker and the cache) while it keeps its data. When the sweeper finds it gone,
# Redis restarted without its data (or was emptied): every message of the queue went with it.
BROKER_MARK = "broker:mark"
QUEUE_LOST = "The queue restarted and lost its list while this job waited; it was sent again."


def broker_lost_its_queue() -> bool:
    """Whether Redis lost its data since the last sweep (True the first time too: sending again is
    harmless). False while Redis is unreachable: there is nothing to send to."""
    try:
        return bool(cache.add(BROKER_MARK, timezone.now().isoformat(), timeout=None))
    except Exception:
        return False


def do_sweep_stale_jobs() -> dict[str, int]:
    """Re-queue running jobs whose worker stopped beating, and re-send queued jobs whose message may have
    been lost with the broker: all of them at once when the broker lost its data, else those queued for
    long. Duplicate sends are harmless: a task only starts a queued job."""
    now = timezone.now()
    counts = {"requeued": 0, "failed": 0, "canceled": 0, "skipped": 0, "resent": 0}
    stale_before = now - timedelta(seconds=settings.STUDIO_JOB_STALE_SECONDS)
    for job in Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale_before):
        counts[_requeue_or_give_up(job)] += 1
    lost = broker_lost_its_queue()
    resend_before = now if lost else now - timedelta(seconds=settings.STUDIO_JOB_REQUEUE_SECONDS)
    for job in Job.objects.filter(status=JobStatus.QUEUED, enqueued_at__lt=resend_before):
        changes: dict[str, Any] = {"enqueued_at": now}
        if lost:
            changes["notice"] = QUEUE_LOST
        if Job.objects.filter(id=job.id, status=JobStatus.QUEUED).update(**changes):
            enqueue(job.id, job.queue)
            counts["resent"] += 1
            if lost:
                _announce_status(job, JobStatus.QUEUED, QUEUE_LOST)
    return counts


def _announce_status(job: Job, status: str, notice: str) -> None:
    realtime.send_job_event(
        job.id,
        {
            "type": realtime.STATUS,
            "status": status,
            "progress": {"step": 0, "total": job.progress_total},
            "notice": notice,
        },
    )


def do_recover_worker_jobs(worker: str) -> int:
    """A worker that just started owns no running job: re-queue any still marked as its own (it died)."""
    return sum(
        _requeue_or_give_up(job) == "requeued"
        for job in Job.objects.filter(status=JobStatus.RUNNING, worker=worker)
    )


def _requeue_or_give_up(job: Job) -> str:
    """A running job whose worker is gone: queue it again, or end it when it was being canceled or has used
    up its attempts."""
    if job.cancel_requested:
        return "canceled" if do_finish_job(job.id, job.attempt, JobStatus.CANCELED) else "skipped"
    if job.attempt >= settings.STUDIO_JOB_MAX_ATTEMPTS:
        failed = do_finish_job(
            job.id,
            job.attempt,
            JobStatus.FAILED,
            error=f"The job's worker stopped {job.attempt} times; giving up.",
        )
        return "failed" if failed else "skipped"
    notice = (
        f"Its worker stopped at step {job.progress_step} of {job.progress_total}; the job was queued again "
        f"(attempt {job.attempt + 1} of {settings.STUDIO_JOB_MAX_ATTEMPTS})."
    )
    with transaction.atomic():
        if not Job.requeue(job.id, job.attempt, notice):
            return "skipped"
        transaction.on_commit(lambda: enqueue(job.id, job.queue))
        transaction.on_commit(lambda: _announce_status(job, JobStatus.QUEUED, notice))
    return "requeued"
