"""Running one generation: parameters in, PIL images out, with a step callback for progress, previews
and cancellation."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from . import pipelines
from .preview import latent_projector, latents_to_rgb
from .registry import ModelInfo

_cache: pipelines.PipelineCache | None = None


def cache() -> pipelines.PipelineCache:
    global _cache
    if _cache is None:
        from django.conf import settings

        _cache = pipelines.PipelineCache(settings.STUDIO_PIPELINE_CACHE_SIZE)
    return _cache


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
    seeds = [(request.seed + i) % 2**32 for i in range(request.num_images)]
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    channels = pipe.unet.config.in_channels
    factors, bias = latent_projector(
        request.model.latent_rgb_factors, request.model.latent_rgb_bias, channels
    )
    canceled = False

    def on_step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        nonlocal canceled
        total = pipe.num_timesteps
        hooks.on_step(step + 1, total)
        if hooks.wants_preview(step + 1, total):
            hooks.on_preview(step + 1, total, latents_to_rgb(kwargs["latents"][0], factors, bias))
        if hooks.should_cancel():
            canceled = True
            pipe._interrupt = True
        return kwargs

    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.inference_mode():
        output = pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            width=request.width,
            height=request.height,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            num_images_per_prompt=request.num_images,
            generator=generators,
            callback_on_step_end=on_step_end,
            output_type="pil",
        )
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    return GenerationResult(
        images=list(output.images),
        seeds=seeds,
        model_sha256=loaded.sha256,
        gpu_seconds=elapsed,
        canceled=canceled,
        device=str(loaded.device),
    )
