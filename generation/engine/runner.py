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

from ..schemas import JobParams
from . import pipelines
from .errors import GenerationError
from .preview import Previewer, latent_projector
from .registry import ModelInfo

_cache: pipelines.PipelineCache | None = None


def cache() -> pipelines.PipelineCache:
    global _cache
    if _cache is None:
        _cache = pipelines.PipelineCache()
    return _cache


OUT_OF_MEMORY = "The worker ran out of memory for this job: try a smaller size or fewer images at once."


def loaded_models() -> list[str]:
    """The models this worker process keeps loaded (none before its first load)."""
    return _cache.loaded() if _cache is not None else []


def device_memory_bytes() -> int | None:
    return pipelines.device_memory_bytes()


@dataclass(frozen=True)
class GenerationRequest:
    """One run of a model: the job's parameters (the same ``JobParams`` the job row stores) and, for the
    image-based modes, the start image and the inpainting mask (greyscale, white = repaint), both resized
    here to the output size."""

    model: ModelInfo
    params: JobParams
    init_image: Image.Image | None = None
    mask_image: Image.Image | None = None


def text_request(model: ModelInfo, prompt: str, **params: Any) -> GenerationRequest:
    """A text-to-image run at the model's defaults (seed 0), with ``params`` overriding any of them."""
    values: dict[str, Any] = {
        "model": model.id,
        "prompt": prompt,
        "width": model.default_width,
        "height": model.default_height,
        "steps": model.default_steps,
        "guidance_scale": model.default_guidance,
        "seed": 0,
        "scheduler": model.default_scheduler,
        **params,
    }
    return GenerationRequest(model, JobParams.model_validate(values))


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
    params = request.params
    loaded = cache().get(request.model)
    pipelines.set_scheduler(loaded, params.scheduler)
    pipe = loaded.pipe
    mode_kwargs: dict[str, Any] = {"width": params.width, "height": params.height}
    init_image = mask_image = None
    if request.init_image is not None:
        pipe, mode_kwargs, init_image, mask_image = _mode_call(loaded, request)
    seeds = [(params.seed + i) % 2**32 for i in range(params.num_images)]
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
                latents = pipelines.preview_latents(loaded, kwargs["latents"], params.width, params.height)
                hooks.on_preview(done, planned, to_rgb(latents))
        if hooks.should_cancel():
            canceled = True
            pipe._interrupt = True
        return kwargs

    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    loras = tuple((lora.id, lora.weight) for lora in params.loras)
    try:
        with pipelines.loras_applied(loaded, loras), torch.inference_mode():
            output = pipe(
                prompt=params.prompt,
                negative_prompt=params.negative_prompt or None,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance_scale,
                num_images_per_prompt=params.num_images,
                generator=generators,
                callback_on_step_end=on_step_end,
                output_type="pil",
                **mode_kwargs,
            )
    except (torch.OutOfMemoryError, MemoryError) as exc:
        raise GenerationError(OUT_OF_MEMORY) from exc
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower() or "can't allocate memory" in str(exc).lower():
            raise GenerationError(OUT_OF_MEMORY) from exc  # allocators that say it in words
        raise
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    images = list(output.images)
    if init_image is not None and mask_image is not None:
        images = [keep_unmasked(image, init_image, mask_image, params.mask_blur) for image in images]
    return GenerationResult(
        images=images,
        seeds=seeds,
        model_sha256=loaded.sha256,
        gpu_seconds=elapsed,
        canceled=canceled,
        device=str(loaded.device),
    )


# --- image-based modes --


def planned_steps(request: GenerationRequest) -> int:
    """The denoising steps the run makes and reports (``JobParams.planned_steps``, which the job row's
    progress total was set from)."""
    if request.init_image is None:
        return request.params.steps
    return request.params.planned_steps()


def _mode_call(
    loaded: pipelines.LoadedModel, request: GenerationRequest
) -> tuple[Any, dict[str, Any], Image.Image, Image.Image | None]:
    """The pipeline and call arguments of an image-based mode: img2img (variations and upscales are img2img
    at a given strength and size) or inpainting. The start image is resized to the output size with Lanczos
    (an upscale's enlargement happens here), the mask with nearest-neighbour so it stays black and white."""
    assert request.init_image is not None
    params = request.params
    size = (params.width, params.height)
    init_image = request.init_image.convert("RGB")
    if init_image.size != size:
        init_image = init_image.resize(size, Image.Resampling.LANCZOS)
    strength = params.strength if params.strength is not None else 1.0
    repainted = planned_steps(request)
    if loaded.info.flow_matching and repainted < params.steps:
        # SD3's and FLUX's image pipelines round the repainted share of the steps up, Stable Diffusion's
        # round it down: ask for the latter's count (the job's progress total) with a strength midway
        # between two counts, which float rounding cannot tip either way.
        strength = (repainted - 0.5) / params.steps
    kwargs: dict[str, Any] = {"image": init_image, "strength": strength}
    if request.mask_image is None:
        pipe = pipelines.mode_pipeline(loaded, "img2img")
        # Stable Diffusion's image-to-image pipelines take the size from the image; others (FLUX) ask for it.
        if "width" in inspect.signature(pipe.__call__).parameters:
            kwargs.update(width=params.width, height=params.height)
        return pipe, kwargs, init_image, None
    mask = request.mask_image.convert("L")
    if mask.size != size:
        mask = mask.resize(size, Image.Resampling.NEAREST)
    kwargs.update(mask_image=mask, width=params.width, height=params.height)
    return pipelines.mode_pipeline(loaded, "inpaint"), kwargs, init_image, mask


def keep_unmasked(
    image: Image.Image, init_image: Image.Image, mask: Image.Image, feather: int
) -> Image.Image:
    """The inpainted image with the start image's own pixels wherever the mask keeps them (the VAE's round
    trip would otherwise soften the whole picture), blended over an edge ``feather`` pixels wide."""
    from PIL import ImageFilter

    soft = mask.filter(ImageFilter.GaussianBlur(feather)) if feather else mask
    # Never let the feather reach into the painted area: it stays fully repainted.
    soft = Image.composite(mask, soft, mask)
    return Image.composite(image.convert("RGB"), init_image, soft)
