"""Running one generation: parameters in, PIL images out, with a step callback for progress, previews
and cancellation."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from ..schemas import JobParams
from . import control, pipelines, reference, regions
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


def device_report() -> dict[str, Any]:
    """What this worker process runs on, for the fleet's states: the device by name, its memory in total and
    free now (the GPU's; the host's on the CPU), this process's resident memory and the GPU memory torch
    holds."""
    device, _dtype = pipelines.choose_device()
    if device.type == "cuda":
        index = torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        name = f"cuda:{index} {torch.cuda.get_device_name(index)}"
    else:
        free, total, name = host_memory_available(), pipelines.host_memory_bytes(), "cpu"
    return {
        "device": name,
        "memory_total": int(total),
        "memory_free": int(free),
        "rss_bytes": rss_bytes(),
        "device_bytes": device_memory_bytes(),
    }


def rss_bytes() -> int:
    """This process's resident memory now (Linux), else its peak."""
    import os
    import resource
    import sys

    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


@dataclass(frozen=True)
class GenerationRequest:
    """One run of a model: the job's parameters (the same ``JobParams`` the job row stores) and, for the
    image-based modes, the start image and the inpainting mask (greyscale, white = repaint), both resized
    here to the output size; for its ControlNet units, their control images in order (preprocessed here
    into control maps)."""

    model: ModelInfo
    params: JobParams
    init_image: Image.Image | None = None
    mask_image: Image.Image | None = None
    # Each of ``params.regions``' masks (greyscale, white = the region), None for a box.
    region_masks: tuple[Image.Image | None, ...] = ()
    # The images of ``params.references``, in order (jobs of one call share them: see ``batch_key``).
    reference_images: tuple[Image.Image, ...] = ()
    control_images: tuple[Image.Image, ...] = ()


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
    # The control map of each ControlNet unit, in order (what the ControlNets steered with).
    control_maps: list[Image.Image] = field(default_factory=list)


class StepHooks(Protocol):
    def on_step(self, step: int, total: int) -> None: ...

    def wants_preview(self, step: int, total: int) -> bool: ...

    def on_preview(self, step: int, total: int, rgb: np.ndarray) -> None: ...

    def should_cancel(self) -> bool: ...


def generate(request: GenerationRequest, hooks: StepHooks) -> GenerationResult:
    """Run one request alone (a batch of one)."""
    return generate_batch([request], [hooks])[0]


# Activation memory one image of a batch adds, per megapixel of output, in half precision (fp32 doubles it):
# rough figures for the published architectures with SDPA, on the high side so that a batch never runs out.
BATCH_BYTES_PER_MEGAPIXEL = {"sd1": 3.0e9, "sd2": 3.0e9, "sdxl": 2.5e9, "sd3": 4.0e9, "flux": 5.0e9}


# What each ControlNet unit adds to an image's activations, as a share of the model's own: a ControlNet is the
# UNet's encoder half run beside it.
CONTROLNET_ACTIVATION_SHARE = 0.5


def batch_capacity(model: ModelInfo, width: int, height: int, controlnets: int = 0) -> int:
    """How many images of this size one call may make on this worker's device, from the memory free on it
    now (the GPU's, else the host's) and the family's per-image estimate (``batch_bytes_per_megapixel`` in
    the model's ``studio.json`` overrides it), raised for each ControlNet unit the call runs. At least 1."""
    per_megapixel = float(
        model.extra.get("batch_bytes_per_megapixel") or BATCH_BYTES_PER_MEGAPIXEL.get(model.family, 4.0e9)
    )
    device, dtype = pipelines.choose_device(model)
    per_image = per_megapixel * (width * height / 1e6) * (2 if dtype == torch.float32 else 1)
    per_image *= 1 + CONTROLNET_ACTIVATION_SHARE * controlnets
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info()
    else:
        free = host_memory_available()
    return max(1, int(free * 0.8 // max(per_image, 1.0)))


def host_memory_available() -> int:
    """Memory the host can still give (``MemAvailable``), or a conservative 1 GiB where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 30


def generate_batch(requests: list[GenerationRequest], hooks: list[StepHooks]) -> list[GenerationResult]:
    """Run several requests of one ``JobParams.batch_key`` in one pipeline call, one result per request.

    Each image ``i`` of a request uses seed ``seed + i`` on its own CPU generator, so a seed gives the same
    image alone or in a batch, whatever the device (within float rounding of the batched kernels). Each
    request's hooks see its own progress, previews from its own slice of the latents, and its own cancel: a
    request canceled mid-call stops getting calls at once (``on_canceled``, where the hooks have it, tells
    them) and its images are discarded; the call stops early only when every request is canceled. The
    measured time is shared out by image count."""
    assert requests
    assert len(requests) == len(hooks)
    first = requests[0]
    assert all(r.params.batch_key() == first.params.batch_key() for r in requests[1:]), "incompatible batch"
    params = first.params
    loaded = cache().get(first.model)
    pipelines.set_scheduler(loaded, params.scheduler)
    pipe = loaded.pipe
    mode_kwargs: dict[str, Any] = {"width": params.width, "height": params.height}
    finishes: list[Finish | None] = [None] * len(requests)
    if first.init_image is not None:
        calls = [_mode_call(loaded, request) for request in requests]
        pipe, mode_kwargs = calls[0][0], dict(calls[0][1])
        finishes = [call[2] for call in calls]
        if len(requests) > 1:
            mode_kwargs["image"] = [
                c[1]["image"]
                for c, r in zip(calls, requests, strict=True)
                for _ in range(r.params.num_images)
            ]
            if "mask_image" in mode_kwargs:
                mode_kwargs["mask_image"] = [
                    c[1]["mask_image"]
                    for c, r in zip(calls, requests, strict=True)
                    for _ in range(r.params.num_images)
                ]
    counts = [r.params.num_images for r in requests]
    offsets = [sum(counts[:i]) for i in range(len(requests))]
    control_maps = [control_maps_of(r) for r in requests]
    if params.controlnets:
        pipe, control_kwargs = _control_call(loaded, first, mode_kwargs, control_maps, counts)
        mode_kwargs.update(control_kwargs)
    seeds = [[(r.params.seed + i) % 2**32 for i in range(r.params.num_images)] for r in requests]
    generators = [torch.Generator("cpu").manual_seed(s) for member in seeds for s in member]
    prompts = [r.params.prompt for r in requests for _ in range(r.params.num_images)]
    negatives = [r.params.negative_prompt for r in requests for _ in range(r.params.num_images)]
    channels = pipe.vae.config.latent_channels  # (the denoiser's input may be packed: FLUX)
    factors, bias = latent_projector(first.model.latent_rgb_factors, first.model.latent_rgb_bias, channels)
    to_rgb = Previewer(factors, bias, pipelines.preview_decoder(loaded))
    planned = planned_steps(first)
    shown = 0
    canceled = [False] * len(requests)
    started = 0.0

    def on_step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        nonlocal shown
        # Progress counts the steps asked for. Some schedulers call back more often: Heun evaluates twice per
        # step but the last, PNDM's warm-up once more at the start; their calls map onto the steps in order.
        done = min(planned, -(-(step + 1) * planned // pipe.num_timesteps))
        if done > shown:
            shown = done
            latents = None
            for index, member in enumerate(hooks):
                if canceled[index]:
                    continue
                member.on_step(done, planned)
                if member.wants_preview(done, planned):
                    if latents is None:
                        latents = pipelines.preview_latents(
                            loaded, kwargs["latents"], params.width, params.height
                        )
                    part = latents[offsets[index] : offsets[index] + counts[index]]
                    member.on_preview(done, planned, to_rgb(part))
        for index, member in enumerate(hooks):
            if not canceled[index] and member.should_cancel():
                canceled[index] = True
                on_canceled = getattr(member, "on_canceled", None)
                if on_canceled is not None:
                    share = counts[index] / sum(counts)
                    on_canceled((time.perf_counter() - started) * share)
        if all(canceled):
            pipe._interrupt = True
        return kwargs

    # A compiled denoiser runs at this size and batch once before the job's time counts (eager: nothing).
    pipelines.warm_shape(loaded, params.width, params.height, sum(counts))
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    loras = tuple((lora.id, lora.weight) for lora in params.loras)
    if any(negatives) and "negative_prompt" in inspect.signature(pipe.__call__).parameters:
        mode_kwargs["negative_prompt"] = negatives
    # (FLUX's ControlNet image pipelines take no negative prompt; FLUX reads one only with "true" CFG, which
    # the studio does not run, so nothing is lost.)
    try:
        with (
            pipelines.loras_applied(loaded, loras),
            torch.inference_mode(),
            # Regions widen the UNet's batch in its first hook; the references' hook then reads every row.
            regions.applied(loaded, pipe, first, sum(counts)),
            reference.job_references(pipe, first.model, params, first.reference_images, sum(counts)) as extra,
        ):
            output = pipe(
                prompt=prompts,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance_scale,
                num_images_per_prompt=1,
                generator=generators,
                callback_on_step_end=on_step_end,
                output_type="pil",
                **mode_kwargs,
                **extra,
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
    results = []
    for index in range(len(requests)):
        own = images[offsets[index] : offsets[index] + counts[index]]
        finish = finishes[index]
        if finish is not None:
            own = [finish(image) for image in own]
        results.append(
            GenerationResult(
                images=[] if canceled[index] else own,
                seeds=seeds[index],
                model_sha256=loaded.sha256,
                gpu_seconds=elapsed * counts[index] / sum(counts),
                canceled=canceled[index],
                device=str(loaded.device),
                control_maps=control_maps[index],
            )
        )
    return results


# --- ControlNets --


def control_maps_of(request: GenerationRequest) -> list[Image.Image]:
    """The control map of each of the request's ControlNet units, at the output size."""
    params = request.params
    if len(request.control_images) != len(params.controlnets):
        raise GenerationError("The job's control images could not all be read.")
    return [
        control.preprocess(unit.preprocessor, image, params.width, params.height)
        for unit, image in zip(params.controlnets, request.control_images, strict=True)
    ]


def _control_call(
    loaded: pipelines.LoadedModel,
    first: GenerationRequest,
    mode_kwargs: dict[str, Any],
    maps: list[list[Image.Image]],
    counts: list[int],
) -> tuple[Any, dict[str, Any]]:
    """The ControlNet pipeline of the call's mode and its ControlNet arguments: each unit's maps repeated for
    every image of each request (the requests of a batch share the units' settings, not their images)."""
    params = first.params
    kind = "txt2img" if first.init_image is None else "inpaint" if "mask_image" in mode_kwargs else "img2img"
    nets = control.controlnets(cache(), loaded, params.controlnets)
    pipe = control.pipeline(loaded, kind, nets)
    per_unit = [
        [own[unit] for own, count in zip(maps, counts, strict=True) for _ in range(count)]
        for unit in range(len(params.controlnets))
    ]
    return pipe, control.call_arguments(pipe, params.controlnets, per_unit, params.width, params.height)


# --- image-based modes --


def planned_steps(request: GenerationRequest) -> int:
    """The denoising steps the run makes and reports (``JobParams.planned_steps``, which the job row's
    progress total was set from)."""
    if request.init_image is None:
        return request.params.steps
    return request.params.planned_steps()


# What becomes of each image a request's call made (the start image's own pixels put back), or None.
Finish = Callable[[Image.Image], Image.Image]


def _mode_call(
    loaded: pipelines.LoadedModel, request: GenerationRequest
) -> tuple[Any, dict[str, Any], Finish | None]:
    """The pipeline, call arguments and finish of an image-based mode: img2img (variations and upscales are
    img2img at a given strength and size), inpainting or outpainting. The start image is resized to the
    output size with Lanczos (an upscale's enlargement happens here), the mask with nearest-neighbour so it
    stays black and white; an outpainting's start image is never resized (its canvas is built around it)."""
    assert request.init_image is not None
    params = request.params
    size = (params.width, params.height)
    if params.mode == "outpaint" and params.extend is not None:
        canvas, outpaint_mask, keep_original = outpaint_canvas(
            request.init_image.convert("RGB"), params.extend.sides(), params.mask_blur
        )
        call = {
            "image": canvas,
            "mask_image": outpaint_mask,
            "strength": 1.0,
            "width": params.width,
            "height": params.height,
        }
        return pipelines.mode_pipeline(loaded, "inpaint"), call, keep_original
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
        return pipe, kwargs, None
    mask = request.mask_image.convert("L")
    if mask.size != size:
        mask = mask.resize(size, Image.Resampling.NEAREST)
    kwargs.update(mask_image=mask, width=params.width, height=params.height)
    start, blur = init_image, params.mask_blur

    def finish(image: Image.Image) -> Image.Image:
        return keep_unmasked(image, start, mask, blur)

    return pipelines.mode_pipeline(loaded, "inpaint"), kwargs, finish


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


def outpaint_canvas(
    original: Image.Image, sides: tuple[int, int, int, int], seam: int
) -> tuple[Image.Image, Image.Image, Finish]:
    """An outpainting's canvas, the inpainting mask it is painted with, and its finish.

    ``sides`` are the pixels added (left, right, top, bottom). The canvas holds the original at its offset
    and, in the new area, the original's edge pixels stretched outwards: a neutral start that continues its
    colours. The mask (white = paint) covers the new area and reaches ``seam`` pixels into the original
    along each side that grew, so the model paints across the seam and the new area follows on from what is
    there. The finish keeps every pixel of the original exactly (the VAE's round trip and the painted band
    are discarded there) and, in the new area, fades from the stretched edge into the painted image over
    ``seam`` pixels, so the seam is soft without an original pixel changing."""
    left, right, top, bottom = sides
    width, height = original.size
    pixels = np.asarray(original.convert("RGB"))
    canvas = Image.fromarray(np.pad(pixels, ((top, bottom), (left, right), (0, 0)), mode="edge"))
    total_w, total_h = canvas.size
    mask = np.full((total_h, total_w), 255, dtype=np.uint8)
    # (never so far that the band of two opposite sides would cover the whole original)
    into_left, into_right = (max(0, min(seam, width // 2 - 1)) if grew else 0 for grew in (left, right))
    into_top, into_bottom = (max(0, min(seam, height // 2 - 1)) if grew else 0 for grew in (top, bottom))
    mask[top + into_top : top + height - into_bottom, left + into_left : left + width - into_right] = 0
    # How far each pixel lies outside the original's rectangle (0 inside it).
    xs, ys = np.arange(total_w), np.arange(total_h)
    dx = np.maximum(np.maximum(left - xs, xs - (left + width - 1)), 0).astype(np.float32)
    dy = np.maximum(np.maximum(top - ys, ys - (top + height - 1)), 0).astype(np.float32)
    distance = np.sqrt(dx[None, :] ** 2 + dy[:, None] ** 2)
    painted = np.clip(distance / (seam + 1), 0, 1) if seam else (distance > 0).astype(np.float32)
    weight = painted[:, :, None]  # 0 on the original, rising to 1 at ``seam`` pixels out
    stretched = np.asarray(canvas, dtype=np.float32)

    def finish(image: Image.Image) -> Image.Image:
        made = np.asarray(image.convert("RGB"), dtype=np.float32)
        blended = np.clip(np.rint(made * weight + stretched * (1 - weight)), 0, 255).astype(np.uint8)
        result = Image.fromarray(blended)
        result.paste(original.convert("RGB"), (left, top))  # the original's own pixels, exactly
        return result

    return canvas, Image.fromarray(mask, mode="L"), finish
