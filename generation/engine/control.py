"""ControlNet in the engine: the preprocessors that turn a control image into its control map (no weights),
the ControlNets themselves (loaded once and kept with the model they steer, in the pipeline cache), and the
ControlNet pipeline of a loaded model with its call's arguments.

A preprocessor is a function from an RGB image, already fitted to the output size, to the map a ControlNet
reads (white lines on black for the edge and line kinds). ``PREPROCESSORS`` is the dispatch: a new one (the
weight-based annotators of ``annotators.py``, say) is one entry there, and its name in
``schemas.Preprocessor``.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from ..schemas import ControlNetUse
from . import annotators, pipelines, registry
from .errors import GenerationError

logger = logging.getLogger(__name__)

# The Canny detector's hysteresis thresholds on 0–255 gradients: sd-webui-controlnet's defaults, which the
# published canny ControlNets were trained with.
CANNY_LOW, CANNY_HIGH = 100, 200
# Line art: a pixel darker than this (0–255) is part of a line.
LINEART_THRESHOLD = 128


# --- preprocessors --


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """The image scaled to cover ``width`` × ``height`` and cropped to it, centred (sd-webui-controlnet's
    "Crop and Resize"): the control map lines up with the image made, and nothing is stretched."""
    image = image.convert("RGB")
    if image.size == (width, height):
        return image
    return ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def canny(image: Image.Image) -> Image.Image:
    """Canny edges (OpenCV's detector): white one-pixel lines on black where the brightness changes."""
    import cv2

    grey = np.asarray(image.convert("L"))
    edges = cv2.Canny(grey, CANNY_LOW, CANNY_HIGH)
    return Image.fromarray(edges, mode="L").convert("RGB")


def lineart(image: Image.Image) -> Image.Image:
    """A sketch's lines as ControlNets read line art: dark lines on white become white lines on black (the
    threshold drops paper grain and faint smudges)."""
    grey = np.asarray(image.convert("L"))
    lines = np.where(grey < LINEART_THRESHOLD, 255, 0).astype(np.uint8)
    return Image.fromarray(lines, mode="L").convert("RGB")


def scribble(image: Image.Image) -> Image.Image:
    """A scribble is its own map (white strokes on black): only its brightness is kept."""
    return image.convert("L").convert("RGB")


def as_given(image: Image.Image) -> Image.Image:
    """The image is the map already (one made elsewhere: a depth map, a pose drawing)."""
    return image.convert("RGB")


PREPROCESSORS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "canny": canny,
    "lineart": lineart,
    "scribble": scribble,
    "none": as_given,
}


def preprocess(name: str, image: Image.Image, width: int, height: int) -> Image.Image:
    """The control map of ``image`` by the preprocessor ``name``, at ``width`` × ``height`` (RGB): one of
    ``PREPROCESSORS``, or "depth" and "pose", drawn by the installed annotator of that kind."""
    if name in registry.ANNOTATOR_KINDS:
        annotator = registry.annotator_for(name)
        if annotator is None:
            raise GenerationError(f"No {name} annotator is installed on this worker.")
        return annotators.detect(name, fit(image, width, height), annotator, width, height)
    function = PREPROCESSORS.get(name)
    if function is None:
        raise GenerationError(f"The worker has no preprocessor {name!r}.")
    made = function(fit(image, width, height))
    if made.size != (width, height):
        made = made.resize((width, height), Image.Resampling.LANCZOS)
    return made.convert("RGB")


# --- the ControlNets --


def load_controlnet(info: registry.ControlNetInfo, loaded: pipelines.LoadedModel) -> Any:
    """A ControlNet from its folder into host memory (safetensors only), in the model's precision and set up
    as the model is (SDPA attention, channels-last convolutions); the pipeline cache moves it to the model's
    device."""
    from diffusers import ControlNetModel, FluxControlNetModel

    cls = FluxControlNetModel if info.config.get("_class_name") == "FluxControlNetModel" else ControlNetModel
    module = cls.from_pretrained(
        str(info.path), dtype=loaded.dtype, local_files_only=True, use_safetensors=True
    ).eval()
    options = loaded.fast_path
    if options.sdpa:
        pipelines.use_sdpa(module)
    if options.channels_last and cls is ControlNetModel:
        module.to(memory_format=torch.channels_last)
    return module


def controlnets(
    cache: pipelines.PipelineCache, loaded: pipelines.LoadedModel, units: Sequence[ControlNetUse]
) -> list[Any]:
    """The units' ControlNets on the model's device, from the cache (loaded on first use)."""
    found = []
    for unit in units:
        info = registry.get_controlnet(unit.id)
        if info is None:
            raise GenerationError(f"The ControlNet {unit.id!r} is no longer installed.")
        misfit = registry.controlnet_misfit(info, loaded.info)
        if misfit:
            raise GenerationError(misfit)
        key = f"controlnet:{info.id}:{info.sha256}"
        found.append(cache.addon(loaded.info, key, functools.partial(load_controlnet, info, loaded)))
    return found


# --- the pipeline and its call --

PIPELINE_KINDS = ("txt2img", "img2img", "inpaint")


def pipeline(loaded: pipelines.LoadedModel, kind: str, nets: list[Any]) -> Any:
    """The model's ControlNet pipeline for ``kind`` (text to image, image to image, inpainting) steered by
    ``nets``, built from its text-to-image pipeline's components (``from_pipe``: no weights are read or
    copied), sampling with its current scheduler. Several ControlNets are combined (diffusers'
    ``MultiControlNetModel``)."""
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image

    auto = {
        "txt2img": AutoPipelineForText2Image,
        "img2img": AutoPipelineForImage2Image,
        "inpaint": AutoPipelineForInpainting,
    }[kind]
    pipe = auto.from_pipe(loaded.pipe, controlnet=nets[0] if len(nets) == 1 else list(nets))
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = loaded.pipe.scheduler
    return pipe


def call_arguments(
    pipe: Any, units: Sequence[ControlNetUse], maps: list[list[Image.Image]], width: int, height: int
) -> dict[str, Any]:
    """The ControlNet arguments of a pipeline call: each unit's control maps, one per image of the call (a
    batch tensor each, so that every pipeline takes per-image maps for several ControlNets alike), and its
    weight, start and end. ``maps`` holds the maps of each unit, image by image."""
    # The pipeline's own preprocessing of control images: 0–1 for the UNet ControlNets, FLUX's −1–1.
    processor = getattr(pipe, "control_image_processor", None) or pipe.image_processor
    batches = [processor.preprocess(images, height=height, width=width) for images in maps]
    name = "control_image" if "control_image" in inspect.signature(pipe.__call__).parameters else "image"
    if len(units) == 1:
        unit = units[0]
        return {
            name: batches[0],
            "controlnet_conditioning_scale": float(unit.weight),
            "control_guidance_start": float(unit.start),
            "control_guidance_end": float(unit.end),
        }
    return {
        name: batches,
        "controlnet_conditioning_scale": [float(u.weight) for u in units],
        "control_guidance_start": [float(u.start) for u in units],
        "control_guidance_end": [float(u.end) for u in units],
    }
