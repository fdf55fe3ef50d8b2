"""``/sdapi/v1/``: the AUTOMATIC1111 web UI's API, for the tools that already speak it.

Each call acts as the API token's user, in the project the ``X-Studio-Project`` header (or the token's
default project) names, through the same services as ``/api/v1/``: ``generation.a1111`` does the translating.
txt2img and img2img wait for their jobs on the channel layer, holding no thread.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from ninja import Query
from ninja.security.base import AuthBase

from studio.audit import client_ip
from studio.boundary import ApiToken, StudioRouter, answers

from . import a1111
from .engine import registry
from .models import Job, JobStatus
from .sdapi_schemas import (
    ImagesOut,
    Img2ImgIn,
    InterruptOut,
    LoraOut,
    MemoryOut,
    OptionsIn,
    OptionsOut,
    OptionsSetOut,
    PngInfoIn,
    PngInfoOut,
    ProgressOut,
    ProgressQuery,
    SamplerOut,
    SchedulerOut,
    ScriptsOut,
    SdModelOut,
    Txt2ImgIn,
    UpscalerOut,
)


class BasicToken(AuthBase):
    """``Authorization: Basic base64(username:API token)``, as ``--api-auth`` clients send it (checked by the
    token middleware; never a password)."""

    openapi_type = "http"
    openapi_scheme = "basic"

    def __call__(self, request: HttpRequest) -> Any:
        return ApiToken()(request)


TOKENS = [ApiToken(), BasicToken()]
router = StudioRouter(tags=["AUTOMATIC1111"], auth=TOKENS)
GENERATION_ERRORS = (400, 404, 413, 429, 502, 504)


def _token_id(request: HttpRequest) -> int | None:
    token = getattr(request, "api_token", None)
    return token.pk if token is not None else None


def _plan(request: HttpRequest, payload: Any, planner: Any) -> a1111.Call:
    token = getattr(request, "api_token", None)
    project = a1111.project_for(request.user, token, request.headers.get(a1111.PROJECT_HEADER))
    return planner(request.user, project, _token_id(request), payload)


async def _run(request: HttpRequest, call: a1111.Call, payload: Any) -> dict[str, Any]:
    ip = client_ip(request)
    jobs = await sync_to_async(a1111.do_start)(call, ip=ip)
    await a1111.wait_for([job.id for job in jobs])
    if call.hires is not None and not await sync_to_async(_interrupted)(call):
        jobs = await sync_to_async(a1111.do_upscale)(call, ip=ip)
        await a1111.wait_for([job.id for job in jobs])
    return await sync_to_async(a1111.answer)(call, payload)


def _interrupted(call: a1111.Call) -> bool:
    return Job.objects.filter(id__in=[j.id for j in call.jobs], status=JobStatus.CANCELED).exists()


@router.post("/txt2img", response=answers({200: ImagesOut}, *GENERATION_ERRORS), url_name="sdapi-txt2img")
async def txt2img(request: HttpRequest, payload: Txt2ImgIn) -> dict[str, Any]:
    """Text to image; answers when the images are made (``enable_hr``: and upscaled)."""
    call = await sync_to_async(_plan)(request, payload, a1111.plan_txt2img)
    return await _run(request, call, payload)


@router.post("/img2img", response=answers({200: ImagesOut}, *GENERATION_ERRORS), url_name="sdapi-img2img")
async def img2img(request: HttpRequest, payload: Img2ImgIn) -> dict[str, Any]:
    """Image to image, or inpainting with a ``mask``; the start image is kept as an upload of the project."""
    call = await sync_to_async(_plan)(request, payload, a1111.plan_img2img)
    return await _run(request, call, payload)


@router.get("/progress", response=answers({200: ProgressOut}), url_name="sdapi-progress")
def progress(request: HttpRequest, query: Query[ProgressQuery]) -> dict[str, Any]:
    """The caller's running job: progress 0–1, the estimated seconds left, and its live preview (JPEG)."""
    return a1111.progress(request.user, _token_id(request), with_image=not query.skip_current_image)


@router.post("/interrupt", response=answers({200: InterruptOut}), url_name="sdapi-interrupt")
def interrupt(request: HttpRequest) -> dict[str, Any]:
    """Stop the caller's current call: its running job within a step, its queued ones at once."""
    stopped = a1111.do_interrupt(request.user, _token_id(request), only_running=False, ip=client_ip(request))
    return {"interrupted": stopped}


@router.post("/skip", response=answers({200: InterruptOut}), url_name="sdapi-skip")
def skip(request: HttpRequest) -> dict[str, Any]:
    """Stop the batch running now; the call goes on with its next batch."""
    stopped = a1111.do_interrupt(request.user, _token_id(request), only_running=True, ip=client_ip(request))
    return {"interrupted": stopped}


@router.get("/sd-models", response=answers({200: list[SdModelOut]}), url_name="sdapi-sd-models")
def sd_models(request: HttpRequest) -> list[dict[str, Any]]:
    """The installed models as checkpoints (the name is the model's id; no server path is shown)."""
    return [
        {
            "title": a1111.title(m),
            "model_name": m.id,
            "hash": a1111.short_hash(m),
            "sha256": m.sha256,
            "filename": m.id,
            "config": None,
        }
        for m in registry.list_models()
    ]


@router.get("/samplers", response=answers({200: list[SamplerOut]}), url_name="sdapi-samplers")
def samplers(request: HttpRequest) -> list[dict[str, Any]]:
    return [{"name": name, "aliases": [], "options": {}} for name in a1111.sampler_names()]


@router.get("/schedulers", response=answers({200: list[SchedulerOut]}), url_name="sdapi-schedulers")
def schedulers(request: HttpRequest) -> list[dict[str, Any]]:
    """Schedule types: automatic only (a sampler's schedule is part of its name, "DPM++ 2M Karras")."""
    return [
        {
            "name": "automatic",
            "label": "Automatic",
            "aliases": None,
            "default_rho": None,
            "need_inner_model": None,
        }
    ]


@router.get("/upscalers", response=answers({200: list[UpscalerOut]}), url_name="sdapi-upscalers")
def upscalers(request: HttpRequest) -> list[dict[str, Any]]:
    """The studio's upscale mode: enlarge ×2 or ×4, then a light repaint with the same model."""
    blank = {"model_name": None, "model_path": None, "model_url": None}
    return [{"name": "None", **blank, "scale": None}, {"name": "Latent", **blank, "scale": 2.0}]


@router.get("/loras", response=answers({200: list[LoraOut]}), url_name="sdapi-loras")
def loras(request: HttpRequest) -> list[dict[str, Any]]:
    """Installed LoRAs; use them as ``<lora:alias:weight>`` in the prompt."""
    return [{"name": x.name, "alias": x.id, "path": x.id, "metadata": {}} for x in registry.list_loras()]


@router.get("/options", response=answers({200: OptionsOut}), url_name="sdapi-options")
def get_options(request: HttpRequest) -> dict[str, Any]:
    """The options this token's calls use (the studio keeps the checkpoint, per token)."""
    return a1111.options(_token_id(request))


@router.post("/options", response=answers({200: OptionsSetOut}, 400))
def set_options(request: HttpRequest, payload: OptionsIn) -> dict[str, Any]:
    """Set ``sd_model_checkpoint`` for this token's calls (never for anyone else's)."""
    return {"ignored": a1111.do_set_options(_token_id(request), payload.model_dump(exclude_none=True))}


@router.post("/png-info", response=answers({200: PngInfoOut}, 400), url_name="sdapi-png-info")
def png_info(request: HttpRequest, payload: PngInfoIn) -> dict[str, Any]:
    """The parameters an image carries (the studio's PNGs carry them in AUTOMATIC1111's form)."""
    return a1111.png_info(payload.image)


@router.get("/memory", response=answers({200: MemoryOut}), url_name="sdapi-memory")
def memory(request: HttpRequest) -> dict[str, Any]:
    """As AUTOMATIC1111 answers where it cannot read a figure: each part says why it is missing."""
    why = "Not reported here: the models run on the studio's GPU workers, not on the host that answers."
    return {"ram": {"error": why}, "cuda": {"error": why}}


@router.get("/scripts", response=answers({200: ScriptsOut}), url_name="sdapi-scripts")
def scripts(request: HttpRequest) -> dict[str, Any]:
    """No scripts are served."""
    return {"txt2img": [], "img2img": []}


@router.get("/sd-vae", response=answers({200: list[dict[str, Any]]}), url_name="sdapi-sd-vae")
def sd_vae(request: HttpRequest) -> list[Any]:
    """No separate VAEs: each model uses its own."""
    return []


@router.get("/prompt-styles", response=answers({200: list[dict[str, Any]]}), url_name="sdapi-prompt-styles")
def prompt_styles(request: HttpRequest) -> list[Any]:
    """No prompt styles are served."""
    return []


@router.post("/refresh-checkpoints", response=answers({200: dict[str, Any]}), url_name="sdapi-refresh")
def refresh_checkpoints(request: HttpRequest) -> dict[str, Any]:
    """Models are read from the models dir as they are installed: nothing to refresh."""
    return {}
