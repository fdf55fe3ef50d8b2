"""ControlNet annotators with weights: a reference image in, the control map a depth or pose ControlNet was
trained on out.

- **depth**: a transformers depth-estimation model (``dpt``: DPT/MiDaS; ``depth_anything``: Depth Anything).
  Its prediction is resized to the map's size and spread over 0..255 with near = white, the convention depth
  ControlNets are trained on (these models predict relative inverse depth, which is already larger for nearer
  points; a Depth Anything model predicting metric depth is flipped so that near stays white).
- **pose**: a ViTPose model (``vitpose``) finds COCO's 17 keypoints and they are drawn as an OpenPose-style
  skeleton: coloured limbs and joints on black, each limb only where both its keypoints are confident.
  ViTPose estimates the pose inside a person box; the studio has no person detector, so the whole image is
  that box: one person who fills most of the frame is found well, several people or a small figure are not.

Images are prepared by the model's own image processor (``preprocessor_config.json``, as published with the
model). A depth folder without one is prepared as its model family expects (``fallback_depth_processor``); a
pose folder without one uses the ViTPose processor's defaults at the input size its backbone was built for.

A loaded annotator is kept per process (``CACHE_SIZE``, least recently used first out), on the worker's
compute device, in fp32 (the models are small; fp32 keeps their output the same on every device). Only
safetensors are read, and nothing is ever downloaded.
"""

from __future__ import annotations

import colorsys
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from . import pipelines
from .errors import GenerationError
from .registry import ANNOTATOR_KINDS, ANNOTATOR_MODEL_TYPES, AnnotatorInfo

logger = logging.getLogger(__name__)

CACHE_SIZE = 2
# A keypoint is drawn when ViTPose's heatmap peak for it reaches this (peaks run 0..1; confident joints score
# about 0.7 and more, occluded or absent ones well under 0.3).
POSE_THRESHOLD = 0.3

# COCO's 17 keypoints, in the order ViTPose predicts them.
COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
# OpenPose's 18 body points: COCO's with a neck (between the shoulders), in OpenPose's order, which sets each
# point's colour.
OPENPOSE_POINTS = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
# OpenPose's limbs, in its order, which sets each limb's colour.
OPENPOSE_LIMBS = (
    ("neck", "right_shoulder"), ("neck", "left_shoulder"), ("right_shoulder", "right_elbow"),
    ("right_elbow", "right_wrist"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("neck", "right_hip"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"), ("neck", "left_hip"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("neck", "nose"), ("nose", "right_eye"),
    ("right_eye", "right_ear"), ("nose", "left_eye"), ("left_eye", "left_ear"),
)  # fmt: skip
# OpenPose colours its points and limbs around the hue circle, one step of 1/18 each, fully saturated; limbs
# are drawn at 60% brightness so the joints stand out on them.
POSE_COLOURS = tuple(
    tuple(round(c * 255) for c in colorsys.hsv_to_rgb(i / len(OPENPOSE_POINTS), 1.0, 1.0))
    for i in range(len(OPENPOSE_POINTS))
)
LIMB_BRIGHTNESS = 0.6


@dataclass(frozen=True)
class LoadedAnnotator:
    model: Any
    processor: Any
    device: torch.device


_cache: OrderedDict[tuple[str, str, str], LoadedAnnotator] = OrderedDict()
_lock = threading.Lock()


def detect(kind: str, image: Image.Image, annotator: AnnotatorInfo, width: int, height: int) -> Image.Image:
    """The RGB control map of ``kind`` ("depth" or "pose") for ``image``, at ``width``×``height``, drawn by
    ``annotator`` (one of that kind: ``registry.annotator_for(kind)``)."""
    if kind not in ANNOTATOR_KINDS:
        raise ValueError(f"Unknown annotator kind {kind!r}")
    if annotator.kind != kind:
        raise ValueError(f"Annotator {annotator.id} draws {annotator.kind} maps, not {kind}")
    loaded = load(annotator)
    rgb = image.convert("RGB")
    with torch.inference_mode():
        if kind == "depth":
            return _depth_map(loaded, annotator, rgb, width, height)
        return _pose_map(loaded, rgb, width, height)


def load(annotator: AnnotatorInfo) -> LoadedAnnotator:
    """The annotator's model and image processor, loaded once per process (an annotator reinstalled under
    the same id has another sha256, so it is loaded afresh)."""
    key = (annotator.id, annotator.sha256, str(annotator.path))
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        try:
            loaded = _load(annotator)
        except Exception as exc:
            logger.exception("Could not load the %s annotator %s", annotator.kind, annotator.id)
            raise GenerationError(
                f"The {annotator.kind} annotator “{annotator.name}” could not be loaded; an admin can "
                "reinstall it under Manage → Models."
            ) from exc
        _cache[key] = loaded
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return loaded


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def _load(annotator: AnnotatorInfo) -> LoadedAnnotator:
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation, VitPoseForPoseEstimation

    folder = str(annotator.path)
    options: dict[str, Any] = {"local_files_only": True, "use_safetensors": True}
    model: Any
    if annotator.kind == "depth":
        model = AutoModelForDepthEstimation.from_pretrained(folder, **options)
    else:
        model = VitPoseForPoseEstimation.from_pretrained(folder, **options)
    if ANNOTATOR_MODEL_TYPES.get(model.config.model_type) != annotator.kind:
        found = model.config.model_type
        raise ValueError(f"{folder} holds a {found} model, not a {annotator.kind} annotator")
    has_processor = (annotator.path / "preprocessor_config.json").is_file()
    if annotator.kind == "pose":
        processor = _pose_processor(model.config, folder if has_processor else None)
    elif has_processor:
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    else:
        processor = fallback_depth_processor(model.config)
    device = pipelines.compute_device()
    model = model.to(device=device, dtype=torch.float32).eval()
    return LoadedAnnotator(model=model, processor=processor, device=device)


def fallback_depth_processor(config: Any) -> Any:
    """How a depth folder without ``preprocessor_config.json`` is prepared, as its family was trained:
    Depth Anything at its backbone's image size (518 for the published models), aspect ratio kept, sides a
    multiple of its patch size, ImageNet mean and deviation; DPT at its ``image_size`` square (384 for
    MiDaS), normalised to -1..1. Both bicubic, rescaled from 0..255 first."""
    from transformers import DPTImageProcessorPil

    if config.model_type == "depth_anything":
        backbone = config.backbone_config
        side = int(getattr(backbone, "image_size", 518))
        return DPTImageProcessorPil(
            size={"height": side, "width": side},
            keep_aspect_ratio=True,
            ensure_multiple_of=int(getattr(config, "patch_size", 14)),
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        )
    side = int(config.image_size)
    return DPTImageProcessorPil(
        size={"height": side, "width": side}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
    )


def _pose_processor(config: Any, folder: str | None) -> Any:
    # The PIL backend, whichever image libraries are installed: it needs no torchvision.
    from transformers import VitPoseImageProcessorPil

    if folder is not None:
        return VitPoseImageProcessorPil.from_pretrained(folder, local_files_only=True)
    height, width = config.backbone_config.image_size
    return VitPoseImageProcessorPil(size={"height": int(height), "width": int(width)})


# --- depth --


def _depth_map(
    loaded: LoadedAnnotator, annotator: AnnotatorInfo, image: Image.Image, width: int, height: int
) -> Image.Image:
    inputs = loaded.processor(images=image, return_tensors="pt")
    pixels = inputs["pixel_values"].to(loaded.device, torch.float32)
    predicted = loaded.model(pixel_values=pixels).predicted_depth
    depth = torch.nn.functional.interpolate(
        predicted.reshape(1, 1, *predicted.shape[-2:]).float(),
        size=(height, width),
        mode="bicubic",
        align_corners=False,
    )[0, 0]
    if getattr(loaded.model.config, "depth_estimation_type", "relative") == "metric":
        depth = -depth  # metres grow with distance: flip, so that near is white
    return depth_to_image(depth.cpu().numpy())


def depth_to_image(depth: np.ndarray) -> Image.Image:
    """A depth prediction (larger = nearer) as an RGB image: its range spread over 0..255, the one channel
    in all three. A flat prediction is black."""
    values = np.nan_to_num(depth.astype(np.float64))
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([grey] * 3, axis=-1))


# --- pose --


def _pose_map(loaded: LoadedAnnotator, image: Image.Image, width: int, height: int) -> Image.Image:
    # One person box, the whole image (COCO's x, y, width, height): the studio has no person detector.
    boxes = [[[0.0, 0.0, float(image.width), float(image.height)]]]
    inputs = loaded.processor(image, boxes=boxes, return_tensors="pt")
    pixels = inputs["pixel_values"].to(loaded.device, torch.float32)
    extra: dict[str, Any] = {}
    if getattr(loaded.model.config.backbone_config, "num_experts", 1) > 1:
        # ViTPose+ has a head per training set; COCO's is the first.
        extra["dataset_index"] = torch.zeros(pixels.shape[0], dtype=torch.long, device=loaded.device)
    outputs = loaded.model(pixel_values=pixels, **extra)
    outputs.heatmaps = outputs.heatmaps.float().cpu()
    person = loaded.processor.post_process_pose_estimation(outputs, boxes=boxes)[0][0]
    scale = np.array([width / image.width, height / image.height])
    keypoints = [(float(x), float(y)) for x, y in person["keypoints"].numpy() * scale]
    scores = [float(s) for s in person["scores"].reshape(-1).numpy()]
    return draw_pose(keypoints, scores, width, height)


def draw_pose(
    keypoints: Sequence[tuple[float, float]],
    scores: Sequence[float],
    width: int,
    height: int,
    *,
    threshold: float = POSE_THRESHOLD,
) -> Image.Image:
    """COCO's 17 keypoints (x, y in the map's pixels, in ``COCO_KEYPOINTS`` order) and their confidences as
    an OpenPose-style skeleton on black: each limb whose two ends score ``threshold`` or more, then each such
    joint. The neck is the shoulders' midpoint, confident when both shoulders are."""
    if len(keypoints) != len(COCO_KEYPOINTS) or len(scores) != len(COCO_KEYPOINTS):
        raise ValueError(f"A pose has {len(COCO_KEYPOINTS)} keypoints and as many scores")
    points: dict[str, tuple[float, float] | None] = {
        name: (float(x), float(y)) if score >= threshold else None
        for name, (x, y), score in zip(COCO_KEYPOINTS, keypoints, scores, strict=True)
    }
    left, right = points["left_shoulder"], points["right_shoulder"]
    points["neck"] = ((left[0] + right[0]) / 2, (left[1] + right[1]) / 2) if left and right else None
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    # OpenPose's strokes at 512 px (limbs 8 px wide, joints of radius 4), in proportion for other sizes.
    stroke = max(2, round(min(width, height) / 128))
    for index, (start, end) in enumerate(OPENPOSE_LIMBS):
        a, b = points[start], points[end]
        if a and b:
            colour = tuple(round(c * LIMB_BRIGHTNESS) for c in POSE_COLOURS[index])
            draw.line([a, b], fill=colour, width=stroke * 2)
    for index, name in enumerate(OPENPOSE_POINTS):
        point = points[name]
        if point:
            x, y = point
            draw.ellipse([x - stroke, y - stroke, x + stroke, y + stroke], fill=POSE_COLOURS[index])
    return canvas
