"""The AUTOMATIC1111 compatibility layer: its requests become the studio's own jobs, its answers are made from
the studio's own images.

A txt2img or img2img call is one job per batch (``n_iter``), each of ``batch_size`` images with consecutive
seeds, as AUTOMATIC1111 numbers them; with ``enable_hr`` each image is then upscaled by an upscale job. Every
job goes the normal way (quotas, fair share, roles, the audit trail, the project's gallery), and the caller
waits on the channel layer for the jobs to end, holding no thread while it waits.

What is not served is refused with a sentence naming the field when a request asks for it, and ignored (the
answer's ``info`` lists it) when it cannot change the picture.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image, ImageOps
from pydantic import BaseModel

from gallery.models import Asset
from gallery.services import decode_image, do_upload_image, upload_max_pixels
from studio import permissions as studio_permissions
from studio.boundary import validate
from studio.errors import InvalidInput, NotAllowed, NotFound, ServiceError
from studio.models import Project

from . import realtime, services
from .engine import registry
from .models import TERMINAL_STATES, A1111Options, Job, JobStatus
from .schemas import MASK_PREFIX, MAX_SEED, JobRequest
from .sdapi_schemas import Common, Img2ImgIn, Txt2ImgIn

PROJECT_HEADER = "X-Studio-Project"
NO_PROJECT = (
    f"Name the project to work in: send the header {PROJECT_HEADER}: <project slug>, or make a token with a "
    "default project (Account page, or manage.py studio_token USER --project SLUG)."
)
VERSION = "studio"
LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([-+]?[0-9]*\.?[0-9]+))?>")
# Request fields whose studio counterpart has another name: errors are reported under the client's name.
FIELD_NAMES = {
    "scheduler": "sampler_name",
    "guidance_scale": "cfg_scale",
    "num_images": "batch_size",
    "strength": "denoising_strength",
    "init_asset": "init_images",
    "image": "init_images",
    "model": "sd_model_checkpoint",
    "controlnets": "alwayson_scripts.controlnet.args",
}
# sd-webui-controlnet's module names → the studio's preprocessors.
CONTROLNET_MODULES = {
    "none": "none",
    "canny": "canny",
    "lineart": "lineart",
    "scribble": "scribble",
    "invert": "lineart",
}
CANNY_DEFAULTS = ({-1.0, 100.0}, {-1.0, 200.0})


class JobFailed(ServiceError):
    """A job of the call failed on its worker."""

    status = 502


class StillRunning(ServiceError):
    status = 504


@dataclass
class Call:
    """One txt2img or img2img call, turned into studio jobs."""

    user: Any
    project: Project
    token_id: int | None
    requests: list[Any]
    hires: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    # The ControlNet units' control images (uploaded when the call starts; None: the start image's upload).
    control_images: list[Image.Image | None] = field(default_factory=list)


# --- who and where --


def project_for(user: Any, token: Any, header: str | None) -> Project:
    """The project a call works in: the ``X-Studio-Project`` header's, or the token's default project."""
    slug = (header or "").strip()
    if not slug and token is not None and token.default_project_id is not None:
        slug = token.default_project.slug
    if not slug:
        raise InvalidInput(NO_PROJECT, {PROJECT_HEADER: [NO_PROJECT]})
    project = studio_permissions.projects_visible_to(user).filter(slug=slug).first()
    if project is None:
        raise NotFound(f"No project {slug!r} that you are a member of.")
    return project


# --- models, options, samplers --


def short_hash(model: registry.ModelInfo) -> str | None:
    return model.sha256[:10] if model.sha256 else None


def title(model: registry.ModelInfo) -> str:
    """AUTOMATIC1111's checkpoint title, ``name [hash]``; the name is the model's id."""
    digest = short_hash(model)
    return f"{model.id} [{digest}]" if digest else model.id


def find_model(name: str) -> registry.ModelInfo | None:
    """A model named as AUTOMATIC1111 clients name checkpoints: its title, id, name or short hash."""
    wanted = name.strip().lower()
    bare = re.sub(r"\s*\[[0-9a-f]+\]$", "", wanted)
    for model in registry.list_models():
        names = {model.id.lower(), model.name.lower(), title(model).lower()}
        if wanted in names or bare in names or (short_hash(model) or "-") == wanted:
            return model
    return None


def chosen_model(token_id: int | None, override: Any = None) -> registry.ModelInfo | None:
    """This call's model: ``override_settings.sd_model_checkpoint``, else the token's option, else the site's
    default. None only when the name given matches nothing."""
    name = getattr(override, "sd_model_checkpoint", None)
    if not name and token_id is not None:
        name = (
            A1111Options.objects.filter(token_id=token_id)
            .values_list("sd_model_checkpoint", flat=True)
            .first()
        )
    if not name:
        return registry.default_model()
    return find_model(str(name))


def options(token_id: int | None) -> dict[str, Any]:
    model = chosen_model(token_id, None)
    return {
        "sd_model_checkpoint": title(model) if model else None,
        "sd_checkpoint_hash": model.sha256 if model else None,
    }


def do_set_options(token_id: int | None, values: dict[str, Any]) -> list[str]:
    """Keep ``sd_model_checkpoint`` for this token; returns the options it does not keep."""
    ignored = sorted(key for key in values if key != "sd_model_checkpoint")
    name = values.get("sd_model_checkpoint")
    if name is None:
        return ignored
    if token_id is None:
        raise InvalidInput("Options are kept per API token: call with a token.")
    model = find_model(str(name))
    if model is None:
        raise InvalidInput(
            "No such checkpoint.", {"sd_model_checkpoint": [f"Choose one of: {', '.join(choices())}."]}
        )
    A1111Options.objects.update_or_create(token_id=token_id, defaults={"sd_model_checkpoint": model.id})
    return ignored


def choices() -> list[str]:
    return [title(m) for m in registry.list_models()]


def sampler_names() -> list[str]:
    """The studio's schedulers, named as AUTOMATIC1111 names its samplers (a schedule type in the name)."""
    names: list[str] = []
    for model in registry.list_models():
        for name in model.schedulers:
            if name not in names:
                names.append(name)
    return names


def scheduler_name(payload: Any, model: registry.ModelInfo) -> str | None:
    """The studio scheduler an AUTOMATIC1111 sampler names (None: the model's default). The schedule type
    is always "automatic": a scheduler's schedule is part of its name."""
    return payload.sampler_name or payload.sampler_index or None


# --- turning a call into job requests --


def _notes(payload: Common, notes: list[str]) -> None:
    """What a call asked for that cannot change the picture and is ignored (the request types refuse what
    would)."""
    for name in payload.alwayson_scripts.model_extra or {}:
        notes.append(f"alwayson_scripts.{name} is not served and was ignored.")
    extra = (payload.override_settings.model_extra or {}) if payload.override_settings else {}
    for name in sorted(extra):
        notes.append(f"override_settings.{name} is not served and was ignored.")
    for name, default in (("eta", None), ("s_churn", 0), ("s_tmin", 0), ("s_noise", 1), ("s_min_uncond", 0)):
        value = getattr(payload, name)
        if value not in (None, default):
            notes.append(f"{name} is not served and was ignored.")
    if payload.do_not_save_samples or not payload.save_images:
        notes.append("Every image is kept in the project's gallery, with its provenance.")


def _loras(prompt: str, payload: Common, errors: dict[str, list[str]]) -> tuple[str, list[dict[str, Any]]]:
    """``<lora:name:weight>`` in the prompt, as AUTOMATIC1111 writes extra networks, becomes the job's
    LoRAs (by id or name); the tags leave the prompt."""
    if payload.disable_extra_networks:
        return prompt, []
    chosen: list[dict[str, Any]] = []
    for match in LORA_TAG.finditer(prompt):
        wanted = match.group(1).strip().lower()
        lora = next(
            (x for x in registry.list_loras() if wanted in (x.id.lower(), x.name.lower())),
            None,
        )
        if lora is None:
            errors.setdefault("prompt", []).append(f"No such LoRA: {match.group(1)!r}.")
            continue
        chosen.append({"id": lora.id, "weight": float(match.group(2) or 1.0)})
    return " ".join(LORA_TAG.sub(" ", prompt).split()), chosen


def _base(payload: Common, model: registry.ModelInfo, errors: dict[str, list[str]]) -> dict[str, Any]:
    """The job request fields a call's every job shares."""
    prompt, loras = _loras(payload.prompt, payload, errors)
    body: dict[str, Any] = {
        "prompt": prompt,
        "negative_prompt": payload.negative_prompt,
        "model": model.id,
        "steps": payload.steps,
        "guidance_scale": payload.cfg_scale,
        "num_images": payload.batch_size,
    }
    if loras:
        body["loras"] = loras
    scheduler = scheduler_name(payload, model)
    if scheduler:
        body["scheduler"] = scheduler
    for side in ("width", "height"):
        if getattr(payload, side) is not None:
            body[side] = getattr(payload, side)
    return body


def find_controlnet(name: str) -> registry.ControlNetInfo | None:
    """An installed ControlNet named as the extension's clients name models: its id, name, or ``name
    [hash]`` (the first eight of its sha256)."""
    wanted = name.strip().lower()
    bare = re.sub(r"\s*\[[0-9a-f]+\]$", "", wanted)
    for controlnet in registry.list_controlnets():
        names = {controlnet.id.lower(), controlnet.name.lower()}
        if wanted in names or bare in names:
            return controlnet
    return None


def _controlnets(
    payload: Common, start: Image.Image | None, errors: dict[str, list[str]], notes: list[str]
) -> tuple[list[dict[str, Any]], list[Image.Image | None]]:
    """sd-webui-controlnet's units (``alwayson_scripts.controlnet.args``) as the job's ``controlnets``
    (their images filled in when the call starts) and their control images (None: the start image)."""
    script = payload.alwayson_scripts.controlnet
    units: list[dict[str, Any]] = []
    images: list[Image.Image | None] = []
    field_name = "alwayson_scripts.controlnet.args"
    for number, unit in enumerate(script.args if script else [], start=1):
        where = f"Unit {number}: "
        if not unit.enabled or unit.model in ("", "None"):
            notes.append(f"{field_name}[{number - 1}] is not enabled or names no model, and was ignored.")
            continue
        controlnet = find_controlnet(unit.model)
        if controlnet is None:
            errors.setdefault(field_name, []).append(f"{where}no such ControlNet: {unit.model!r}.")
            continue
        module = CONTROLNET_MODULES[unit.module.lower()]
        if module == "canny" and (
            unit.threshold_a not in CANNY_DEFAULTS[0] or unit.threshold_b not in CANNY_DEFAULTS[1]
        ):
            errors.setdefault(field_name, []).append(
                f"{where}canny's thresholds are 100 and 200 here (threshold_a, threshold_b); others are not "
                "served."
            )
            continue
        raw = unit.image.image if isinstance(unit.image, BaseModel) else unit.image or unit.input_image
        image = _image(raw, field_name, errors) if raw else None
        if raw and image is None:
            continue
        if image is None and start is None:
            errors.setdefault(field_name, []).append(f"{where}give its image (txt2img has no start image).")
            continue
        images.append(image)
        units.append(
            {
                "id": controlnet.id,
                "preprocessor": module,
                "weight": unit.weight,
                "start": unit.guidance_start,
                "end": unit.guidance_end,
            }
        )
    return units, images


def _seeds(payload: Common) -> list[int]:
    """Each batch's first seed: AUTOMATIC1111 numbers a call's images from its seed, one after another."""
    first = payload.seed if payload.seed != -1 else secrets.randbelow(MAX_SEED + 1)
    return [(first + i * payload.batch_size) % (MAX_SEED + 1) for i in range(payload.n_iter)]


def _model(payload: Common, token_id: int | None, errors: dict[str, list[str]]) -> registry.ModelInfo:
    model = chosen_model(token_id, payload.override_settings)
    if model is None:
        raise InvalidInput(
            "No such checkpoint.", {"sd_model_checkpoint": [f"Choose one of: {', '.join(choices())}."]}
        )
    return model


def plan_txt2img(user: Any, project: Project, token_id: int | None, payload: Txt2ImgIn) -> Call:
    """The jobs of a txt2img call, checked before any is made."""
    errors: dict[str, list[str]] = {}
    notes: list[str] = []
    _notes(payload, notes)
    model = _model(payload, token_id, errors)
    base = _base(payload, model, errors)
    hires = None
    if payload.enable_hr:
        hires = _hires(payload, base, model, errors)
        side = max(base.get("width", model.default_width), base.get("height", model.default_height))
        if side * payload.hr_scale > model.max_size:
            errors["hr_scale"] = [
                f"Upscaling ×{payload.hr_scale} gives {side * payload.hr_scale} px; "
                f"{model.name} makes at most {model.max_size} px."
            ]
    units, control_images = _controlnets(payload, None, errors, notes)
    if units:
        base["controlnets"] = units
    requests = [{**base, "mode": "txt2img", "seed": seed} for seed in _seeds(payload)]
    call = Call(user, project, token_id, requests, hires, notes, control_images=control_images)
    return _checked(call, errors)


def _hires(
    payload: Txt2ImgIn, base: dict[str, Any], model: registry.ModelInfo, errors: dict[str, list[str]]
) -> dict[str, Any]:
    """The upscale job each image of a hires. fix call gets (the studio's upscale mode)."""
    width = payload.firstphase_width or base.get("width", model.default_width)
    scale = payload.hr_scale
    if payload.hr_resize_x or payload.hr_resize_y:
        scale = max(
            payload.hr_resize_x / width, payload.hr_resize_y / base.get("height", model.default_height)
        )
    if scale not in (2, 4):
        errors["hr_scale"] = ["Choose one of: 2, 4 (the studio upscales by 2 or 4)."]
    if payload.hr_checkpoint_name and find_model(payload.hr_checkpoint_name) not in (None, model):
        errors["hr_checkpoint_name"] = ["The upscale uses the same checkpoint; another is not served."]
    upscale: dict[str, Any] = {
        "mode": "upscale",
        "model": model.id,
        "prompt": _loras(payload.hr_prompt, payload, errors)[0] or base["prompt"],
        "negative_prompt": payload.hr_negative_prompt or base["negative_prompt"],
        "steps": payload.hr_second_pass_steps or base["steps"],
        "guidance_scale": base["guidance_scale"],
        "scale": payload.hr_scale,
        "strength": payload.denoising_strength if payload.denoising_strength else 0.7,
    }
    if "loras" in base:
        upscale["loras"] = base["loras"]
    scheduler = payload.hr_sampler_name or base.get("scheduler")
    if scheduler:
        upscale["scheduler"] = scheduler
    if payload.hr_upscaler not in (None, "", "Latent", "None"):
        upscale["note"] = f"hr_upscaler {payload.hr_upscaler!r} is not served: the studio's upscale repaints."
    return upscale


def plan_img2img(user: Any, project: Project, token_id: int | None, payload: Img2ImgIn) -> Call:
    """The jobs of an img2img (or, with a mask, inpainting) call. The start image is stored as an upload of
    the project, which the jobs start from (and the gallery shows)."""
    errors: dict[str, list[str]] = {}
    notes: list[str] = []
    _notes(payload, notes)
    if payload.inpainting_fill != 1 and payload.mask:
        notes.append("inpainting_fill is not served: the masked area starts from the original.")
    model = _model(payload, token_id, errors)
    base = _base(payload, model, errors)
    image = _image(payload.init_images[0], "init_images", errors)
    mask_url = _mask(payload, image, errors) if payload.mask else None
    mode: dict[str, Any] = {
        "mode": "inpaint" if mask_url else "img2img",
        "strength": payload.denoising_strength,
    }
    if mask_url:
        mode["mask"] = mask_url
        blur = (
            payload.mask_blur
            if payload.mask_blur is not None
            else max(payload.mask_blur_x, payload.mask_blur_y)
        )
        mode["mask_blur"] = blur
    units, control_images = _controlnets(payload, image, errors, notes)
    if units:
        mode["controlnets"] = units
    requests = [{**base, **mode, "seed": seed} for seed in _seeds(payload)]
    call = Call(user, project, token_id, requests, None, notes, control_images=control_images)
    return _checked(call, errors, start_image=image)


def _image(data: str, name: str, errors: dict[str, list[str]]) -> Image.Image | None:
    raw = data.split(",", 1)[1] if data.startswith("data:") else data
    try:
        decoded = base64.b64decode(raw, validate=True)
        return decode_image(
            decoded,
            field=name,
            formats=("PNG", "JPEG", "WEBP"),
            max_pixels=upload_max_pixels(),
            not_readable="Not a PNG, JPEG or WebP image in base64.",
        )
    except (binascii.Error, ValueError):
        errors[name] = ["Not valid base64."]
    except InvalidInput as exc:
        errors.update(exc.errors)
    return None


def _mask(payload: Img2ImgIn, image: Image.Image | None, errors: dict[str, list[str]]) -> str | None:
    """AUTOMATIC1111's mask as the studio's: a PNG data URL of the start image's size, white = repaint."""
    assert payload.mask is not None
    mask = _image(payload.mask, "mask", errors)
    if mask is None:
        return None
    grey = mask.convert("L")
    if payload.inpainting_mask_invert:
        grey = ImageOps.invert(grey)
    if image is not None and grey.size != image.size:
        grey = grey.resize(image.size, Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG")
    return MASK_PREFIX + base64.b64encode(buffer.getvalue()).decode("ascii")


def _checked(call: Call, errors: dict[str, list[str]], *, start_image: Image.Image | None = None) -> Call:
    """Validate every job request of the call as the studio's own ``JobRequest`` (the start image taken
    as an existing one for now), so that nothing is made when any part is wrong."""
    if not studio_permissions.can_generate(call.user, call.project):
        raise NotAllowed("Viewers cannot generate in this project.")
    placeholder = str(uuid.uuid4())
    for body in call.requests:
        probe = dict(body)
        if start_image is not None:
            probe["init_asset"] = placeholder
        if "controlnets" in probe:
            probe["controlnets"] = [{**unit, "image": placeholder} for unit in probe["controlnets"]]
        try:
            validate(JobRequest, probe)
        except InvalidInput as exc:
            for key, messages in exc.errors.items():
                errors.setdefault(FIELD_NAMES.get(key, key), messages)
    if errors:
        raise InvalidInput("Some fields are invalid: " + ", ".join(sorted(errors)) + ".", errors)
    call.start_image = start_image  # type: ignore[attr-defined]
    return call


# --- making and waiting --


def do_start(call: Call, *, ip: str | None) -> list[Job]:
    """Store the call's start image (if any) and queue its jobs, in one transaction: all or none."""
    with transaction.atomic():
        start = getattr(call, "start_image", None)
        upload = _upload(call, start, "a1111-init.png", ip) if start is not None else None
        # Each unit's control image becomes an upload of the project too (one without: the start image's).
        controls = [
            _upload(call, image, f"a1111-control-{n}.png", ip) if image is not None else upload
            for n, image in enumerate(call.control_images)
        ]
        for body in call.requests:
            if upload is not None:
                body = {**body, "init_asset": str(upload.id)}
            if controls:
                images = [str(c.id) for c in controls if c is not None]
                units = [
                    {**unit, "image": image} for unit, image in zip(body["controlnets"], images, strict=True)
                ]
                body = {**body, "controlnets": units}
            try:
                call.jobs.append(services.do_create_job(call.user, call.project, body, ip=ip))
            except InvalidInput as exc:
                raise InvalidInput(
                    exc.message, {FIELD_NAMES.get(k, k): v for k, v in exc.errors.items()}, exc.extra
                ) from exc
    _remember(call)
    return call.jobs


def _upload(call: Call, image: Image.Image, name: str, ip: str | None) -> Asset:
    """An image a call sent, kept as an upload of the project (a plain PNG of its pixels)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return do_upload_image(call.user, call.project, ContentFile(buffer.getvalue(), name=name), ip=ip)


def _calls_key(token_id: int | None, user_id: Any) -> str:
    return f"sdapi:calls:{token_id or 'user-' + str(user_id)}"


def _remember(call: Call) -> None:
    """Which jobs the token's current call is running, for interrupt and skip."""
    cache.set(_calls_key(call.token_id, call.user.pk), [str(j.id) for j in call.jobs], 24 * 3600)


def do_interrupt(user: Any, token_id: int | None, *, only_running: bool, ip: str | None) -> int:
    """Cancel the jobs of the token's current call (``skip``: only the one running now)."""
    stopped = 0
    ids = cache.get(_calls_key(token_id, user.pk)) or []
    for job in Job.objects.filter(id__in=ids, created_by=user).exclude(status__in=TERMINAL_STATES):
        if only_running and job.status != JobStatus.RUNNING:
            continue
        try:
            services.do_cancel_job(user, job, ip=ip)
            stopped += 1
        except ServiceError:
            continue  # finished meanwhile
    return stopped


async def wait_for(job_ids: list[uuid.UUID]) -> None:
    """Wait until every job has ended, listening on the channel layer for their ends (and asking the
    database every few seconds, in case a message was lost). Holds no thread while waiting."""
    layer = get_channel_layer()
    channel = await layer.new_channel() if layer is not None else None
    groups = [realtime.job_group(job_id) for job_id in job_ids]
    if channel is not None:
        for group in groups:
            await layer.group_add(group, channel)
    deadline = asyncio.get_running_loop().time() + settings.CELERY_TASK_TIME_LIMIT + 60
    try:
        pending = set(job_ids)
        while True:
            pending -= await sync_to_async(_ended)(pending)
            if not pending:
                return
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise StillRunning("The job is still running: its images will be in the project's gallery.")
            await _next_end(layer, channel, min(5.0, remaining))
    finally:
        if channel is not None:
            for group in groups:
                await layer.group_discard(group, channel)


async def _next_end(layer: Any, channel: str | None, timeout: float) -> None:
    """Return when a job's end is announced, or after ``timeout`` seconds."""
    if channel is None:
        await asyncio.sleep(timeout)
        return
    loop = asyncio.get_running_loop()
    until = loop.time() + timeout
    ends = {realtime.SUCCEEDED, realtime.FAILED, realtime.CANCELED}
    while (left := until - loop.time()) > 0:
        try:
            message = await asyncio.wait_for(layer.receive(channel), timeout=left)
        except TimeoutError:
            return
        if (message.get("payload") or {}).get("type") in ends:
            return


def _ended(job_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    return set(Job.objects.filter(id__in=job_ids, status__in=TERMINAL_STATES).values_list("id", flat=True))


def do_upscale(call: Call, *, ip: str | None) -> list[Job]:
    """Hires. fix: an upscale job for each image the first jobs made."""
    assert call.hires is not None
    hires = dict(call.hires)
    note = hires.pop("note", None)
    if note:
        call.notes.append(note)
    made: list[Job] = []
    with transaction.atomic():
        for asset in _assets(call.jobs):
            body = {**hires, "init_asset": str(asset.id), "seed": asset.seed}
            made.append(services.do_create_job(call.user, call.project, body, ip=ip))
    call.jobs = made
    _remember(call)
    return made


def _assets(jobs: list[Job]) -> list[Asset]:
    ids = [j.id for j in jobs]
    return list(
        Asset.objects.filter(job_id__in=ids)
        .select_related("project", "created_by")
        .order_by("created_at", "index")
    )


# --- answers --


def answer(call: Call, payload: Common) -> dict[str, Any]:
    """AUTOMATIC1111's answer: the images as base64 PNGs (each with its provenance), the parameters as sent,
    and ``info``, a JSON string of what was made."""
    jobs = list(Job.objects.filter(id__in=[j.id for j in call.jobs]).order_by("created_at"))
    failed = [j for j in jobs if j.status == JobStatus.FAILED]
    if failed:
        raise JobFailed(f"Generation failed: {failed[0].error}")
    assets = _assets(jobs)
    interrupted = any(j.status == JobStatus.CANCELED for j in jobs)
    images = []
    if payload.send_images:
        for asset in assets:
            with asset.file.open("rb") as f:
                images.append(base64.b64encode(f.read()).decode("ascii"))
    first = assets[0] if assets else None
    params = first.params if first else {}
    info = {
        "prompt": params.get("prompt", payload.prompt),
        "all_prompts": [a.prompt for a in assets],
        "negative_prompt": params.get("negative_prompt", payload.negative_prompt),
        "all_negative_prompts": [a.negative_prompt for a in assets],
        "seed": first.seed if first else payload.seed,
        "all_seeds": [a.seed for a in assets],
        "subseed": -1,
        "all_subseeds": [-1 for _ in assets],
        "subseed_strength": 0,
        "width": first.width if first else payload.width,
        "height": first.height if first else payload.height,
        "sampler_name": params.get("scheduler"),
        "cfg_scale": params.get("guidance_scale", payload.cfg_scale),
        "steps": params.get("steps", payload.steps),
        "batch_size": payload.batch_size,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": first.model_id if first else None,
        "sd_model_hash": first.model_sha256[:10] if first and first.model_sha256 else None,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": params.get("strength"),
        "extra_generation_params": {},
        "index_of_first_image": 0,
        "infotexts": [_infotext(a) for a in assets],
        "styles": [],
        "job_timestamp": jobs[0].created_at.strftime("%Y%m%d%H%M%S") if jobs else "",
        "clip_skip": 1,
        "is_using_inpainting_conditioning": False,
        "version": VERSION,
        "interrupted": interrupted,
        "comments": "\n".join(call.notes),
        "studio": {
            "project": call.project.slug,
            "jobs": [str(j.id) for j in jobs],
            "assets": [str(a.id) for a in assets],
            "ignored": call.notes,
        },
    }
    return {"images": images, "parameters": payload.model_dump(mode="json"), "info": json.dumps(info)}


def _infotext(asset: Asset) -> str:
    from gallery.pngmeta import a1111_parameters

    return a1111_parameters({"prompt": asset.prompt, **asset.params}, asset.model_name, asset.model_sha256)


# --- progress and png-info --


def progress(user: Any, token_id: int | None, *, with_image: bool) -> dict[str, Any]:
    """The caller's running job: how far it is, an estimate of the time left, and its live preview."""
    ids = cache.get(_calls_key(token_id, user.pk)) or []
    mine = Job.objects.filter(created_by=user).exclude(status__in=TERMINAL_STATES)
    job = (mine.filter(id__in=ids) if ids else mine).order_by("-started_at", "-created_at").first()
    if job is None:
        job = mine.order_by("-started_at", "-created_at").first()
    waiting = mine.count()
    state = {
        "skipped": False,
        "interrupted": False,
        "stopping_generation": False,
        "job": str(job.id) if job else "",
        "job_count": waiting,
        "job_timestamp": job.created_at.strftime("%Y%m%d%H%M%S") if job else "0",
        "job_no": 0,
        "sampling_step": 0,
        "sampling_steps": 0,
    }
    if job is None or job.status != JobStatus.RUNNING:
        return {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None, "textinfo": None}
    step, total = cache.get(realtime.progress_cache_key(job.id)) or (job.progress_step, job.progress_total)
    state.update(sampling_step=step, sampling_steps=total)
    done = step / total if total else 0.0
    eta = 0.0
    if job.started_at and done > 0:
        from django.utils import timezone

        elapsed = (timezone.now() - job.started_at).total_seconds()
        eta = max(0.0, elapsed / done - elapsed)
    image = None
    if with_image:
        preview = cache.get(realtime.preview_cache_key(job.id)) or {}
        data_url = preview.get("image") if isinstance(preview, dict) else None
        image = data_url.split(",", 1)[1] if data_url else None
    return {
        "progress": round(done, 4),
        "eta_relative": round(eta, 3),
        "state": state,
        "current_image": image,
        "textinfo": f"Step {step}/{total}",
    }


def png_info(data: str) -> dict[str, Any]:
    """The text an image carries: AUTOMATIC1111's ``parameters`` line read into fields, and the rest."""
    errors: dict[str, list[str]] = {}
    image = _image(data, "image", errors)
    if image is None:
        raise InvalidInput("The image could not be read.", errors)
    texts = {k: v for k, v in getattr(image, "text", {}).items() if isinstance(v, str)}
    info = texts.pop("parameters", "")
    items: dict[str, Any] = dict(texts)
    if "studio" in items:
        try:
            items["studio"] = json.loads(items["studio"])
        except ValueError:
            pass
    return {"info": info, "items": items, "parameters": parse_parameters(info)}


def parse_parameters(text: str) -> dict[str, Any]:
    """AUTOMATIC1111's parameters text (prompt, ``Negative prompt: …``, then ``Key: value, …``) as fields."""
    if not text:
        return {}
    lines = text.strip().split("\n")
    last = lines[-1] if re.search(r"\bSteps: ", lines[-1]) else ""
    body = lines[:-1] if last else lines
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in body:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line.removeprefix("Negative prompt:").strip()
        (negative if in_negative else prompt).append(line)
    fields: dict[str, Any] = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    # (AUTOMATIC1111's own pattern: a value may be quoted, commas and all, as ControlNet units are)
    for key, value in re.findall(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)', last):
        value = value.strip()
        if len(value) > 1 and value[0] == value[-1] == '"':
            value = value[1:-1]
        fields[key.strip()] = int(value) if value.isdigit() else value
        if key.strip() == "Size" and "x" in value:
            width, _, height = value.partition("x")
            fields["Size-1"], fields["Size-2"] = width, height
    return fields
