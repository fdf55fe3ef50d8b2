"""Writes for generation jobs: create, cancel, and the worker's side of the lifecycle.

Every state change is one of ``Job``'s conditional transitions; live events and Celery sends happen in
``transaction.on_commit`` so nobody hears of a row that was rolled back.
"""

from __future__ import annotations

import io
import logging
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Count
from django.dispatch import receiver
from django.utils import timezone
from PIL import Image
from pydantic import BaseModel, ValidationError

from gallery.serializers import asset_to_dict
from gallery.services import asset_storage, delete_stored_files, do_create_job_assets
from studio import audit, quotas
from studio import permissions as studio_permissions
from studio.boundary import validate
from studio.errors import Conflict, InvalidInput, NotAllowed, QuotaExceeded
from studio.models import Project
from studio.signals import Removal, project_deleting

from . import fleet, library, metrics, realtime, regions, styles
from . import references as job_references
from .engine import registry
from .engine.families import FAMILIES
from .masks import read_mask
from .models import TERMINAL_STATES, Job, JobStatus
from .permissions import can_cancel
from .scheduling import fair_share_order
from .schemas import EMPTY_MASK, MAX_SEED, MODE_LABELS, NO_SUCH_ASSET, JobParams, JobRequest
from .serializers import job_to_dict

logger = logging.getLogger(__name__)

# How strongly each mode repaints its start image unless the request says (variations: per kind).
DEFAULT_STRENGTH = {"img2img": 0.6, "inpaint": 0.85, "upscale": 0.3}
VARIATION_STRENGTH = {"subtle": 0.3, "strong": 0.6}
UPSCALE_FACTORS = (2, 4)
# Modes whose prompt defaults to the start image's (a variation or an upscale of the same picture).
PROMPT_FROM_START_IMAGE = {"variation", "upscale"}


@dataclass
class JobPlan:
    """A checked job request: the model, every parameter as it will be used, the start image and the
    cleaned inpainting mask (a greyscale PNG of the start image's size, white = repaint)."""

    model: registry.ModelInfo
    params: JobParams
    init_asset: Any = None
    mask_png: bytes | None = None
    # Each region's cleaned mask (None for a box), in the order of ``params.regions``.
    region_masks: list[bytes | None] = field(default_factory=list)


def check_job(request: Any, *, user: Any = None, project: Project | None = None) -> JobPlan:
    """Resolve a validated ``JobRequest`` against the model and the project: defaults, the model's own
    limits, schedulers and LoRAs, the start image (an image of ``project`` that ``user`` sees) and the mask.
    Raises InvalidInput listing every bad field; nothing is stored."""
    errors: dict[str, list[str]] = {}
    request, style_used = styles.apply_style(request, user, project)
    mode = request.mode
    init = _start_image(request, user, project, errors)

    prompt, negative = request.prompt, request.negative_prompt
    if init is not None and mode in PROMPT_FROM_START_IMAGE:
        prompt, negative = prompt or init.prompt, negative or init.negative_prompt
    if not prompt:
        errors["prompt"] = ["This field is required."]

    model = registry.get_model(request.model) if request.model else registry.default_model()
    if model is None and not request.model:
        raise InvalidInput("No model is installed on this studio.", {"model": ["No model is installed."]})
    if model is None:
        errors["model"] = ["No such model."]
        raise InvalidInput(_invalid_sentence(errors), errors)

    resolved: dict[str, Any] = {
        "mode": mode,
        "prompt": prompt or "",
        "negative_prompt": negative or "",
        "model": model.id,
        "steps": request.steps if request.steps is not None else model.default_steps,
        "guidance_scale": (
            request.guidance_scale if request.guidance_scale is not None else model.default_guidance
        ),
        "seed": request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1),
        "scheduler": request.scheduler or model.default_scheduler,
    }
    if mode not in model.modes:
        errors["mode"] = [f"{model.name} does not do {MODE_LABELS[mode].lower()}."]
    if resolved["scheduler"] not in model.schedulers:
        errors["scheduler"] = [f"Choose one of: {', '.join(model.schedulers)}."]
    if mode == "upscale":
        _check_upscale(request, init, model, resolved, errors)
    elif mode == "outpaint":
        _check_outpaint(request, init, model, resolved, errors)
    else:
        _check_size(request, init, model, resolved, errors)
    mask_png = None
    if mode != "txt2img":
        resolved["init_asset"] = init.id if init is not None else None
        if mode == "outpaint":
            resolved["strength"] = 1.0  # the new area is painted from noise; the start image is kept
        else:
            _check_strength(request, resolved, errors)
        if mode == "inpaint":
            mask_png = _clean_mask(request.mask, init, errors)
    if request.loras:
        resolved["loras"] = library.check_loras(request.loras, model, errors)
    region_masks: list[bytes | None] = []
    if getattr(request, "regions", None):
        resolved["regions"], region_masks = regions.check_regions(
            request.regions, model, resolved["width"], resolved["height"], errors
        )
    if getattr(request, "references", None):
        resolved["references"] = job_references.check_references(
            request.references, model, user, project, errors
        )
    controlnets = getattr(request, "controlnets", None)
    if controlnets:
        resolved["controlnets"] = library.check_controlnets(controlnets, model, errors)
        _control_images(controlnets, user, project, errors)

    if errors:
        raise InvalidInput(_invalid_sentence(errors), errors)
    # Fields the request shares with the parameters and that need no resolving pass through as they are.
    passed = {
        k: v for k, v in request.model_dump().items() if k in JobParams.model_fields and k not in STORED_APART
    }
    params = JobParams.model_validate(
        {**passed, "loras": [], "references": [], "controlnets": [], **resolved, "style": style_used}
    )
    return JobPlan(model=model, params=params, init_asset=init, mask_png=mask_png, region_masks=region_masks)


# Request fields the parameters hold in another form: the masks are stored as files and named in the params.
STORED_APART = {"mask", "regions"}


def check_job_body(data: Any, *, user: Any = None, project: Project | None = None) -> JobPlan:
    """``check_job`` for a raw body (a form's, a script's): validated as a ``JobRequest`` first."""
    return check_job(validate(JobRequest, data), user=user, project=project)


def _invalid_sentence(errors: dict[str, list[str]]) -> str:
    return "Some fields are invalid: " + ", ".join(sorted(errors)) + "."


def _start_image(request: Any, user: Any, project: Project | None, errors: dict[str, list[str]]) -> Any:
    """The start image an image-based mode needs: an image of the job's project that the user sees.
    Another project's image and a missing one get the same answer, so nothing leaks."""
    from gallery.permissions import assets_visible_to

    wanted = getattr(request, "init_asset", None)
    if wanted is None:
        return None
    init = None
    if user is not None and project is not None:
        init = assets_visible_to(user).filter(project=project, id=wanted).first()
    if init is None:
        errors["init_asset"] = [NO_SUCH_ASSET]
    return init


def _control_images(
    units: list[Any], user: Any, project: Project | None, errors: dict[str, list[str]]
) -> None:
    """Each ControlNet unit's control image is an image of the job's project that the user sees (another
    project's and a missing one get the same answer)."""
    from gallery.permissions import assets_visible_to

    wanted = {str(unit.image) for unit in units}
    found: set[str] = set()
    if user is not None and project is not None:
        visible = assets_visible_to(user).filter(project=project, id__in=wanted)
        found = {str(i) for i in visible.values_list("id", flat=True)}
    missing = [n for n, unit in enumerate(units, start=1) if str(unit.image) not in found]
    if missing:
        where = "" if len(units) == 1 else f"ControlNet {', '.join(str(n) for n in missing)}: "
        errors.setdefault("controlnets", []).append(f"{where}no such control image in this project.")


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


def _check_size(
    request: Any, init: Any, model: registry.ModelInfo, resolved: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    """Width and height: the request's, or the model's defaults (a start image's size, fitted)."""
    defaults = (model.default_width, model.default_height)
    if init is not None:
        defaults = _fit_size(init.width, init.height, model)
    multiple = _size_multiple(model)
    for dim, default in zip(("width", "height"), defaults, strict=True):
        value = getattr(request, dim) if getattr(request, dim) is not None else default
        if not model.min_size <= value <= model.max_size:
            errors[dim] = [f"Must be between {model.min_size} and {model.max_size}."]
        elif value % multiple:
            errors[dim] = [f"Must be a multiple of {multiple}."]
        resolved[dim] = value


def _check_strength(request: Any, resolved: dict[str, Any], errors: dict[str, list[str]]) -> None:
    mode = request.mode
    default = DEFAULT_STRENGTH.get(mode, 0.6)
    if mode == "variation":
        resolved["variation"] = request.variation
        default = VARIATION_STRENGTH[request.variation]
    strength = request.strength if request.strength is not None else default
    resolved["strength"] = strength
    if int(resolved["steps"] * strength) < 1:
        errors["strength"] = [
            f"Too weak to change anything in {resolved['steps']} steps: raise the strength or the steps."
        ]


def _check_upscale(
    request: Any, init: Any, model: registry.ModelInfo, resolved: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    """An upscale's size is its start image's times the scale, within the model's limits."""
    scale = request.scale
    resolved["scale"] = scale
    if init is None:
        resolved["width"] = resolved["height"] = model.default_width
        return
    step = _size_multiple(model)
    width, height = _round_to(init.width * scale, step), _round_to(init.height * scale, step)
    resolved["width"], resolved["height"] = width, height
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


def aspect_extent(width: int, height: int, aspect: str, multiple: int = 8) -> tuple[int, int, int, int]:
    """The (left, right, top, bottom) pixels that bring a ``width`` × ``height`` image to the aspect ratio
    ``"w:h"``: only the sides it must grow (the width for a wider ratio, else the height), the new size
    rounded to ``multiple`` and never smaller than the image, the image centred (the first side gets the
    half rounded down to ``multiple``)."""
    ratio_w, ratio_h = (int(part) for part in aspect.split(":"))
    if width * ratio_h < height * ratio_w:  # wider than the image: grow left and right
        target_w, target_h = max(width, _round_to(height * ratio_w / ratio_h, multiple)), height
    else:
        target_w, target_h = width, max(height, _round_to(width * ratio_h / ratio_w, multiple))
    grow_w, grow_h = target_w - width, target_h - height
    left = grow_w // 2 // multiple * multiple
    top = grow_h // 2 // multiple * multiple
    return left, grow_w - left, top, grow_h - top


def _check_outpaint(
    request: Any, init: Any, model: registry.ModelInfo, resolved: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    """An outpainting's size is its start image's plus the extent (``extend``, or the sides ``aspect``
    grows), within the model's and the site's limits. The start image is kept pixel for pixel, so the sides
    of the result are multiples of the model's size multiple only when the image's are."""
    multiple = _size_multiple(model)
    if request.extend is not None and request.aspect is not None:
        errors["aspect"] = ["Give either extend or aspect, not both."]
        return
    if request.extend is None and request.aspect is None:
        errors["extend"] = [
            'Say how far to extend each side (extend: {"left", "right", "top", "bottom"}) or give an '
            'aspect ratio (aspect, e.g. "16:9").'
        ]
        return
    field = "extend" if request.extend is not None else "aspect"
    if init is None:
        resolved["width"], resolved["height"] = model.default_width, model.default_height
        return
    if request.extend is not None:
        left, right, top, bottom = request.extend.sides()
    else:
        left, right, top, bottom = aspect_extent(init.width, init.height, request.aspect, multiple)
        resolved["aspect"] = request.aspect
    width, height = init.width + left + right, init.height + top + bottom
    resolved["width"], resolved["height"] = width, height
    resolved["extend"] = {"left": left, "right": right, "top": top, "bottom": bottom}
    largest = min(model.max_size, int(settings.STUDIO_MAX_IMAGE_SIZE))
    start = f"this {init.width} × {init.height} image"
    made = f"Extending {start} gives {width} × {height}"
    if field == "aspect":
        made = f"Bringing {start} to {request.aspect} gives {width} × {height}"
    if not left + right + top + bottom:
        errors[field] = (
            ["Extend at least one side by 8 pixels or more."]
            if field == "extend"
            else [f"This {init.width} × {init.height} image already has the aspect ratio {request.aspect}."]
        )
    elif max(width, height) > largest:
        errors[field] = [f"{made}; {model.name} makes images of at most {largest} × {largest}."]
    elif min(width, height) < model.min_size:
        smallest = model.min_size
        errors[field] = [f"{made}; {model.name} makes images of at least {smallest} × {smallest}."]
    elif width % multiple or height % multiple:
        errors[field] = [
            f"{made}; {model.name} needs sides that are multiples of {multiple}, and the start image is "
            "kept as it is: extend by other amounts."
        ]


def _clean_mask(value: str, init: Any, errors: dict[str, list[str]]) -> bytes | None:
    """The mask as a greyscale PNG of the start image's size, pure black and white (white = repaint)."""
    try:
        mask = read_mask(value)
    except InvalidInput as exc:
        errors.update(exc.errors or {"mask": [str(exc)]})
        return None
    if init is not None and mask.size != (init.width, init.height):
        mask = mask.resize((init.width, init.height), Image.Resampling.NEAREST)
    if mask.getbbox() is None:
        errors["mask"] = [EMPTY_MASK]
        return None
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


# --- the web side --


# The worker's task, named rather than imported: tasks call services, never the other way round.
RUN_JOB_TASK = "generation.tasks.run_job"


# A queued job's notice while no live worker has its model installed (the sweeper routes it once one has).
WAITING_FOR_MODEL = (
    "No running worker has the model {model} installed; the job waits until a worker that has it is running."
)


def do_dispatch(job_id: Any, *, avoid: str = "") -> str | None:
    """Choose a queued job's worker (generation/fleet.py), record it, and send the job's message to that
    worker's queue; to the pool's queue when no worker is known. Returns the worker, "" for the pool, or
    None when the job is not queued or waits for a worker that has its model (it then says so, and its
    message waits on the pool's queue)."""
    row = (
        Job.objects.filter(id=job_id)
        .values("status", "worker", "queue", "model_id", "notice", "progress_total")
        .first()
    )
    if row is None:
        return None
    pool, model_id = row["queue"], row["model_id"]
    if row["status"] != JobStatus.QUEUED:
        # A worker started it before its message went out, with the message of another queued job: that
        # job is owed a message, on the queue of the worker that took this one.
        enqueue(job_id, pool if not row["worker"] else fleet.delivery_queue(pool, row["worker"]))
        return None
    if not settings.STUDIO_ROUTING:
        enqueue(job_id, pool)
        return ""
    workers = fleet.live_workers()
    backlog = dict(
        Job.objects.filter(status=JobStatus.QUEUED, queue=pool)
        .exclude(routed_to="")
        .values_list("routed_to")
        .annotate(n=Count("id"))
        .values_list("routed_to", "n")
    )
    chosen, why = fleet.choose_worker(pool, model_id, workers, backlog, avoid=avoid)
    waiting = WAITING_FOR_MODEL.format(model=model_id)
    if chosen is None and why == "no_worker":
        if (
            Job.objects.filter(id=job_id, status=JobStatus.QUEUED)
            .exclude(notice=waiting)
            .update(notice=waiting, routed_to="")
        ):
            realtime.send_job_event(
                job_id,
                {
                    "type": realtime.STATUS,
                    "status": JobStatus.QUEUED,
                    "progress": {"step": 0, "total": row["progress_total"]},
                    "notice": waiting,
                },
            )
            # Also on the pool's queue, for a worker whose models changed since it last said: one that has
            # the model takes it, any other passes it by (and the sweeper routes it once one reports it).
            enqueue(job_id, pool)
        return None
    routed = chosen or ""
    changes: dict[str, Any] = {"routed_to": routed}
    if row["notice"] == waiting:
        changes["notice"] = ""
    if not Job.objects.filter(id=job_id, status=JobStatus.QUEUED).update(**changes):
        return do_dispatch(job_id)  # started meanwhile: its message is owed to another job (above)
    enqueue(job_id, fleet.delivery_queue(pool, routed))
    return routed


def enqueue(job_id: Any, queue: str) -> None:
    """Hand the job to Celery. A broker outage is logged, not raised: the row stays queued and the sweeper
    sends it again."""
    from celery import current_app

    try:
        current_app.send_task(
            RUN_JOB_TASK,
            args=(str(job_id),),
            queue=queue,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2},
        )
    except Exception:
        logger.exception("Could not enqueue job %s; the sweeper will retry", job_id)


def messages_waiting(queue: str) -> int | None:
    """How many messages the broker holds for ``queue`` (not those a worker has taken), or None when the
    broker cannot be asked."""
    from celery import current_app
    from kombu.exceptions import ChannelError

    try:
        with current_app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)
            channel: Any = connection.default_channel
            try:
                return int(channel.queue_declare(queue=queue, passive=True).message_count)
            except ChannelError:
                return 0  # no such queue: an empty list leaves no key behind
    except Exception:
        logger.warning("Could not ask the broker how many messages wait on %s", queue, exc_info=True)
        return None


def do_create_job(user: Any, project: Project, request: Any, *, ip: str | None = None) -> Job:
    """Check a ``JobRequest`` (a validated one, or the raw body of a form), store a queued job, and enqueue
    it once the row is committed."""
    if not studio_permissions.can_generate(user, project):
        raise NotAllowed("Viewers cannot generate in this project.")
    plan = (
        check_job(request, user=user, project=project)
        if isinstance(request, BaseModel)
        else check_job_body(request, user=user, project=project)
    )
    job_id = uuid.uuid4()
    mask_name = ""
    params = plan.params
    if plan.mask_png is not None:
        # The worker reads the mask from storage (the job's params name it), never from the request.
        mask_name = asset_storage().save(f"masks/{project.id}/{job_id}.png", ContentFile(plan.mask_png))
        params = params.model_copy(update={"mask": mask_name})
    params = regions.store_masks(params, plan.region_masks, f"masks/{project.id}", job_id)
    try:
        with transaction.atomic():
            job = _create_job_row(user, project, plan.model, params, job_id, ip=ip)
    except Exception:
        delete_stored_files([mask_name, *(r.mask or "" for r in params.regions)])
        raise
    return job


def check_queue_room(user: Any) -> None:
    """QuotaExceeded (429) when the user already has ``STUDIO_MAX_QUEUED_JOBS`` jobs waiting or running
    (0: no limit). Call inside the submit's transaction: the user's row is locked first, so one person's
    simultaneous submits are counted one after the other."""
    limit = int(settings.STUDIO_MAX_QUEUED_JOBS)
    if limit <= 0:
        return
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))
    active = Job.objects.filter(created_by=user, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).count()
    if active >= limit:
        raise QuotaExceeded(
            f"You already have {active} jobs waiting or running, the most one person may have at once. "
            "Wait for one to finish, or cancel one, then submit again.",
            extra={"queue": {"active": active, "limit": limit}},
        )


def _create_job_row(
    user: Any,
    project: Project,
    model: registry.ModelInfo,
    params: JobParams,
    job_id: Any,
    *,
    ip: str | None,
) -> Job:
    """Reserve the images against the quotas, store the queued job, audit it, and enqueue it on commit.
    Call inside a transaction."""
    period_start = quotas.reserve(user, project, params.num_images)
    check_queue_room(user)
    job = Job.objects.create(
        id=job_id,
        project=project,
        created_by=user,
        model_id=model.id,
        params=params.model_dump(mode="json", exclude_none=True),
        queue=settings.STUDIO_GPU_QUEUE,
        progress_total=params.planned_steps(),
        quota_period_start=period_start,
        reserved_images=params.num_images,
    )
    audit.record(
        user,
        audit.JOB_CREATE,
        target=f"job:{job.id}",
        project=project,
        ip=ip,
        details={
            "model": model.id,
            "num_images": params.num_images,
            "steps": params.steps,
            "mode": params.mode,
        },
    )
    transaction.on_commit(lambda: do_dispatch(job.id))
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
    """queued → running for this worker: the first job in fair-share order of the named job's queue among
    those routed to this worker and the unrouted ones it has the model of (usually the named job itself).
    None when nothing is queued there for it (a duplicate delivery, a cancel, a job taken into a batch)."""
    queue = Job.objects.filter(id=job_id).values_list("queue", flat=True).first()
    if queue is None:
        return None
    for candidate in takeable(fair_share_order(queue, limit=200), worker):
        attempt = Job.claim(candidate, worker)
        if attempt is not None:
            job_id = candidate
            break
    else:
        return None
    job = Job.objects.select_related("project", "created_by").get(id=job_id)
    _announce_started(job)
    return job, attempt


def takeable(order: list[Any], worker: str) -> list[Any]:
    """The jobs of ``order`` (ids) this worker may start: routed to it, or routed to no one and of a model
    installed here. Order kept."""
    rows = Job.objects.filter(id__in=order, status=JobStatus.QUEUED).values_list(
        "id", "routed_to", "model_id"
    )
    allowed = {
        job_id
        for job_id, routed_to, model_id in rows
        if routed_to == worker or (not routed_to and registry.get_model(model_id) is not None)
    }
    return [job_id for job_id in order if job_id in allowed]


def do_claim_batch(lead: Job, worker: str, room: int) -> list[tuple[Job, int]]:
    """queued → running for this worker: the queued jobs that can share the running ``lead`` job's pipeline
    call (the same ``JobParams.batch_key``), in fair-share order, until they would make more than ``room``
    images. Each claim is the same conditional UPDATE as a start, so no job is claimed by two workers."""
    try:
        key = JobParams.model_validate(lead.params).batch_key()
    except ValidationError:
        return []
    order = [job_id for job_id in fair_share_order(lead.queue, limit=200) if job_id != lead.id]
    waiting = Job.objects.filter(id__in=order, model_id=lead.model_id, status=JobStatus.QUEUED)
    params_of = dict(waiting.values_list("id", "params"))
    claimed: list[tuple[Job, int]] = []
    for job_id in order:
        if room <= 0:
            break
        if job_id not in params_of:
            continue
        try:
            params = JobParams.model_validate(params_of[job_id])
        except ValidationError:
            continue  # its own worker run fails it with a sentence
        if params.num_images > room or params.batch_key() != key:
            continue
        attempt = Job.claim(job_id, worker)
        if attempt is None:
            continue
        room -= params.num_images
        job = Job.objects.select_related("project", "created_by").get(id=job_id)
        _announce_started(job)
        claimed.append((job, attempt))
    return claimed


def _announce_started(job: Job) -> None:
    realtime.cache_quietly(cache.delete, realtime.preview_cache_key(job.id))
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
    control_maps: list[Any] | None = None,
) -> bool:
    """running → succeeded with its assets (and its ControlNet units' control maps, stored once and linked to
    each of them), in one transaction. False if the job was no longer this attempt's to finish (canceled
    meanwhile, or handed to another worker)."""
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
        assets = do_create_job_assets(
            job, images, seeds, model_name=model_name, model_sha256=model_sha256, control_maps=control_maps
        )
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
    """Call on commit of a job's terminal transition: tell its watchers, and let go of what only a running
    job needs (its mask in storage: its images keep their own copies; its live state in the cache)."""
    job = Job.objects.select_related("project", "created_by").get(id=job_id)
    realtime.send_job_event(job.id, terminal_event(job))
    realtime.send_project_event(job.project.slug, {"type": realtime.JOB_UPDATED, "job": job_to_dict(job)})
    _forget_live_state(job_id)
    delete_stored_files([job.params.get("mask") or "", *regions.stored_names(job.params)])


def forget_live_preview(job_id: Any) -> None:
    cache.delete_many([realtime.preview_cache_key(job_id), realtime.progress_cache_key(job_id)])


def _forget_live_state(job_id: Any) -> None:
    keys = [
        realtime.cancel_cache_key(job_id),
        realtime.preview_cache_key(job_id),
        realtime.progress_cache_key(job_id),
    ]
    realtime.cache_quietly(cache.delete_many, keys)


@receiver(project_deleting, dispatch_uid="generation.services.project_deleting")
def _project_deleting(sender: Any, project: Project, dry_run: bool = False, **kwargs: Any) -> Removal:
    """A project is being deleted: its running jobs are told to stop once it commits (their workers then
    find the rows gone), and its jobs' masks leave storage (the rows go by cascade)."""
    jobs = Job.objects.filter(project=project)
    counts = {"jobs": jobs.count()}
    if dry_run:
        return Removal(counts=counts)
    folder = f"masks/{project.pk}/"  # where do_create_job stores every mask of the project
    unfinished = list(jobs.exclude(status__in=TERMINAL_STATES).values_list("id", "params"))

    def stop() -> None:
        for job_id, _ in unfinished:
            _forget_live_state(job_id)
            cache.set(realtime.cancel_cache_key(job_id), True, 3600)

    transaction.on_commit(stop)
    masks = [p["mask"] for _, p in unfinished if p.get("mask") and not str(p["mask"]).startswith(folder)]
    return Removal(storage_names=[folder, *masks], counts=counts)


def _announce_assets(slug: str, assets: list[Any]) -> None:
    for asset in assets:
        realtime.send_project_event(slug, {"type": realtime.ASSET_CREATED, "asset": asset_to_dict(asset)})


def _announce_queue_moved(queue: str) -> None:
    # Each move has its own id: the sockets of one web process that hear it share one read of the queue.
    realtime.send(realtime.queue_group(queue), {"type": realtime.QUEUE_MOVED, "move": uuid.uuid4().hex})


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
    been lost: all of them at once when the broker lost its data; those waiting on a queue that holds no
    message (a consumer took theirs and lost it with its connection); those queued for long; those routed to
    a worker that is gone; and those waiting for a worker that has their model. Duplicate sends are harmless:
    a task only starts a queued job, and one with none left to start does nothing."""
    now = timezone.now()
    counts = {"requeued": 0, "failed": 0, "canceled": 0, "skipped": 0, "resent": 0, "rerouted": 0}
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
            do_dispatch(job.id)
            counts["resent"] += 1
            if lost:
                _announce_status(job, JobStatus.QUEUED, QUEUE_LOST)
    counts["rerouted"] = _reroute(now)
    counts["resent"] += _resend_stranded(now)
    return counts


def _reroute(now: Any) -> int:
    """Route again the queued jobs whose worker is gone (its state expired) and those that wait for a worker
    with their model. Nothing moves while no worker is known at all (Redis lost the states, or every worker
    is down): the jobs keep their places until one reports."""
    workers = fleet.live_workers()
    if not workers:
        return 0
    queued = Job.objects.filter(status=JobStatus.QUEUED)
    orphaned = queued.exclude(routed_to="").exclude(routed_to__in=list(workers))
    waiting = queued.filter(routed_to="", notice__startswith=WAITING_FOR_MODEL.split("{", 1)[0])
    moved = 0
    for job_id, gone in [*orphaned.values_list("id", "routed_to"), *waiting.values_list("id", "routed_to")]:
        if Job.objects.filter(id=job_id, status=JobStatus.QUEUED).update(enqueued_at=now):
            if do_dispatch(job_id, avoid=gone) is not None:
                moved += 1
    return moved


def _resend_stranded(now: Any) -> int:
    """Jobs queued for longer than a heartbeat's grace on a queue the broker says is empty: every one of
    them lacks its message (each message starts one queued job), so each is sent again."""
    waited_before = now - timedelta(seconds=settings.STUDIO_JOB_STALE_SECONDS)
    stranded = Job.objects.filter(status=JobStatus.QUEUED, enqueued_at__lt=waited_before).exclude(
        notice__startswith=WAITING_FOR_MODEL.split("{", 1)[0]
    )
    resent = 0
    for pool, routed in sorted(set(stranded.values_list("queue", "routed_to"))):
        if messages_waiting(fleet.delivery_queue(pool, routed)) != 0:
            continue
        for job_id in stranded.filter(queue=pool, routed_to=routed).values_list("id", flat=True):
            if Job.objects.filter(id=job_id, status=JobStatus.QUEUED).update(enqueued_at=now):
                do_dispatch(job_id)
                resent += 1
    return resent


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
        transaction.on_commit(lambda: do_dispatch(job.id, avoid=job.worker))
        transaction.on_commit(lambda: _announce_status(job, JobStatus.QUEUED, notice))
    return "requeued"
