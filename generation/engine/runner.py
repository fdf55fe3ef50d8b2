"""Running one generation: parameters in, PIL images out, with a step callback for progress, previews
and cancellation."""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from . import pipelines
from .preview import Previewer, latent_projector
from .registry import ModelInfo

_cache: pipelines.PipelineCache | None = None


def cache() -> pipelines.PipelineCache:
    global _cache
    if _cache is None:
        from django.conf import settings

        _cache = pipelines.PipelineCache(settings.STUDIO_PIPELINE_CACHE_SIZE)
    return _cache


def loaded_models() -> list[str]:
    """The models this worker process keeps loaded (none before its first load)."""
    return _cache.loaded() if _cache is not None else []


def device_memory_bytes() -> int | None:
    return pipelines.device_memory_bytes()


@dataclass(frozen=True)
class GenerationRequest:
    model: ModelInfo
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int
    scheduler: str
    num_images: int
    # Image-based modes: the start image (img2img, variations, upscales) and, for inpainting, the mask
    # (greyscale, white = repaint). Both are resized here to width × height; strength is the share of the
    # steps that repaint the start image.
    init_image: Image.Image | None = None
    mask_image: Image.Image | None = None
    strength: float | None = None
    # LoRAs applied for this job only: (installed LoRA id, weight) pairs.
    loras: tuple[tuple[str, float], ...] = ()


@dataclass
class GenerationResult:
    images: list[Image.Image]
    seeds: list[int]
    model_sha256: str
    gpu_seconds: float
    canceled: bool
    device: str


class StepHooks(Protocol):
    def on_step(self, step: int, total: int) -> None: ...

    def wants_preview(self, step: int, total: int) -> bool: ...

    def on_preview(self, step: int, total: int, rgb: np.ndarray) -> None: ...

    def should_cancel(self) -> bool: ...


def generate(request: GenerationRequest, hooks: StepHooks) -> GenerationResult:
    """Run the model's pipeline. Each image ``i`` uses seed ``seed + i`` on its own CPU generator, so a
    seed reproduces the same image whatever the device or batch."""
    loaded = cache().get(request.model)
    pipelines.set_scheduler(loaded, request.scheduler)
    pipe = loaded.pipe
    mode_kwargs: dict[str, Any] = {"width": request.width, "height": request.height}
    init_image = mask_image = None
    if request.init_image is not None:
        pipe, mode_kwargs, init_image, mask_image = _mode_call(loaded, request)
    seeds = [(request.seed + i) % 2**32 for i in range(request.num_images)]
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    channels = pipe.vae.config.latent_channels  # (the denoiser's input may be packed: FLUX)
    factors, bias = latent_projector(
        request.model.latent_rgb_factors, request.model.latent_rgb_bias, channels
    )
    to_rgb = Previewer(factors, bias, pipelines.preview_decoder(loaded))
    planned = planned_steps(request)
    shown = 0
    canceled = False

    def on_step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        nonlocal canceled, shown
        # Progress counts the steps asked for. Some schedulers call back more often: Heun evaluates twice per
        # step but the last, PNDM's warm-up once more at the start; their calls map onto the steps in order.
        done = min(planned, -(-(step + 1) * planned // pipe.num_timesteps))
        if done > shown:
            shown = done
            hooks.on_step(done, planned)
            if hooks.wants_preview(done, planned):
                latents = pipelines.preview_latents(loaded, kwargs["latents"], request.width, request.height)
                hooks.on_preview(done, planned, to_rgb(latents))
        if hooks.should_cancel():
            canceled = True
            pipe._interrupt = True
        return kwargs

    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    with pipelines.loras_applied(loaded, request.loras), torch.inference_mode():
        output = pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            num_images_per_prompt=request.num_images,
            generator=generators,
            callback_on_step_end=on_step_end,
            output_type="pil",
            **mode_kwargs,
        )
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    images = list(output.images)
    if init_image is not None and mask_image is not None:
        images = [keep_unmasked(image, init_image, mask_image) for image in images]
    return GenerationResult(
        images=images,
        seeds=seeds,
        model_sha256=loaded.sha256,
        gpu_seconds=elapsed,
        canceled=canceled,
        device=str(loaded.device),
    )


# --- image-based modes --

DEFAULT_STRENGTH = 0.6


def planned_steps(request: GenerationRequest) -> int:
    """The denoising steps a job runs and reports: all of them from noise, the last ``strength`` share of
    them from a start image (``generation.services.expected_steps`` says the same before the job runs)."""
    if request.init_image is None:
        return request.steps
    strength = DEFAULT_STRENGTH if request.strength is None else request.strength
    return max(1, min(int(request.steps * strength), request.steps))


MASK_FEATHER = 2  # px of soft edge where a repainted area meets the kept image


def _mode_call(
    loaded: pipelines.LoadedModel, request: GenerationRequest
) -> tuple[Any, dict[str, Any], Image.Image, Image.Image | None]:
    """The pipeline and call arguments of an image-based mode: img2img (variations and upscales are img2img
    at a given strength and size) or inpainting. The start image is resized to the output size with Lanczos
    (an upscale's enlargement happens here), the mask with nearest-neighbour so it stays black and white."""
    assert request.init_image is not None
    size = (request.width, request.height)
    init_image = request.init_image.convert("RGB")
    if init_image.size != size:
        init_image = init_image.resize(size, Image.Resampling.LANCZOS)
    strength = DEFAULT_STRENGTH if request.strength is None else request.strength
    repainted = planned_steps(request)
    if loaded.info.flow_matching and repainted < request.steps:
        # SD3's and FLUX's image pipelines round the repainted share of the steps up, Stable Diffusion's
        # round it down: ask for the latter's count (the job's progress total) with a strength midway
        # between two counts, which float rounding cannot tip either way.
        strength = (repainted - 0.5) / request.steps
    kwargs: dict[str, Any] = {"image": init_image, "strength": strength}
    if request.mask_image is None:
        pipe = pipelines.mode_pipeline(loaded, "img2img")
        # Stable Diffusion's image-to-image pipelines take the size from the image; others (FLUX) ask for it.
        if "width" in inspect.signature(pipe.__call__).parameters:
            kwargs.update(width=request.width, height=request.height)
        return pipe, kwargs, init_image, None
    mask = request.mask_image.convert("L")
    if mask.size != size:
        mask = mask.resize(size, Image.Resampling.NEAREST)
    kwargs.update(mask_image=mask, width=request.width, height=request.height)
    return pipelines.mode_pipeline(loaded, "inpaint"), kwargs, init_image, mask


def keep_unmasked(image: Image.Image, init_image: Image.Image, mask: Image.Image) -> Image.Image:
    """The inpainted image with the start image's own pixels wherever the mask keeps them (the VAE's round
    trip would otherwise soften the whole picture), blended over a narrow feathered edge."""
    from PIL import ImageFilter

    soft = mask.filter(ImageFilter.GaussianBlur(MASK_FEATHER)) if MASK_FEATHER else mask
    # Never let the feather reach into the painted area: it stays fully repainted.
    soft = Image.composite(mask, soft, mask)
    return Image.composite(image.convert("RGB"), init_image, soft)
