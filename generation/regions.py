"""Regional prompts, the web side: a job's regions checked against its image size and model, their masks
cleaned, stored for the worker and read back by it. How the engine applies them is
``generation/engine/regions.py``.

A region is a box (``[x0, y0, x1, y1]`` in pixels of the output image) or a painted mask (a PNG data URL,
white = the region), with its prompt and weight. A mask of the image's aspect ratio is scaled to the image's
size (the generate form paints at the size fields' values, which an artist may change afterwards); a mask of
another aspect ratio is refused, since scaling it would move the region.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

from django.core.files.base import ContentFile
from PIL import Image

from gallery.services import asset_storage, decode_image
from studio.errors import InvalidInput

from .engine import registry
from .masks import read_mask
from .schemas import BoxRegion, JobParams

# How far a mask's aspect ratio may differ from the image's and still be scaled to it (rounding of sides).
ASPECT_TOLERANCE = 0.02


def check_regions(
    regions: list[Any] | None,
    model: registry.ModelInfo,
    width: int,
    height: int,
    errors: dict[str, list[str]],
) -> tuple[list[dict[str, Any]], list[bytes | None]]:
    """The regions as the job's parameters hold them, and each region's cleaned mask (a black-and-white
    greyscale PNG of the image's size; None for a box). Every problem is a sentence under ``regions``
    naming the region by its place in the list, as the schema's own sentences do ("Item 2, box: …")."""
    if not regions:
        return [], []
    if "regions" not in registry.model_features(model):
        errors["regions"] = [
            f"{model.name} does not take regional prompts (Stable Diffusion 1.x, 2.x and XL models do)."
        ]
        return [], []
    used: list[dict[str, Any]] = []
    masks: list[bytes | None] = []
    problems: list[str] = []
    for number, region in enumerate(regions, start=1):
        entry: dict[str, Any] = {"prompt": region.prompt, "weight": region.weight}
        png = None
        if isinstance(region, BoxRegion):
            problem = _box_problem(region.box, width, height)
            where = f"Item {number}, box"
            entry["box"] = list(region.box)
        else:
            png, problem = _clean_region_mask(region.mask, width, height)
            where = f"Item {number}, mask"
            if png is not None:
                entry["mask_sha256"] = hashlib.sha256(png).hexdigest()
        if problem:
            problems.append(f"{where}: {problem}")
        used.append(entry)
        masks.append(png)
    if problems:
        errors["regions"] = problems
    return used, masks


def _box_problem(box: list[int], width: int, height: int) -> str | None:
    x0, y0, x1, y1 = box
    if x0 >= x1 or y0 >= y1:
        return f"{box} is empty: give [x0, y0, x1, y1] with x0 < x1 and y0 < y1."
    if x1 > width or y1 > height:
        return f"{box} reaches outside the {width} × {height} image."
    return None


def _clean_region_mask(value: str, width: int, height: int) -> tuple[bytes | None, str | None]:
    try:
        mask = read_mask(value)
    except InvalidInput as exc:
        sentences = exc.errors.get("mask") or [exc.message]
        return None, f"{sentences[0][0].lower()}{sentences[0][1:]}"
    if mask.size != (width, height):
        ratio, wanted = mask.width / mask.height, width / height
        if abs(ratio / wanted - 1) > ASPECT_TOLERANCE:
            return None, (
                f"{mask.width} × {mask.height} is not the image's aspect ratio "
                f"({width} × {height}): paint it at the image's size."
            )
        mask = mask.resize((width, height), Image.Resampling.NEAREST)
    if mask.getbbox() is None:
        return None, "it is empty: paint the region first."
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue(), None


def store_masks(params: JobParams, masks: list[bytes | None], folder: str, job_id: Any) -> JobParams:
    """Store the regions' masks (``folder``/``job_id``-region``n``.png) and name them in the parameters
    (the worker reads them from storage, never from the request). Returns the new parameters."""
    if not any(png is not None for png in masks):
        return params
    regions = []
    for number, (region, png) in enumerate(zip(params.regions, masks, strict=True), start=1):
        if png is not None:
            name = asset_storage().save(f"{folder}/{job_id}-region{number}.png", ContentFile(png))
            region = region.model_copy(update={"mask": name})
        regions.append(region)
    return params.model_copy(update={"regions": regions})


def stored_names(params: dict[str, Any]) -> list[str]:
    """The storage names of a job's region masks (from its stored parameters)."""
    return [str(r["mask"]) for r in params.get("regions") or [] if isinstance(r, dict) and r.get("mask")]


class RegionMaskMissing(Exception):
    """A region's stored mask can no longer be read."""


def load_masks(params: JobParams) -> tuple[Image.Image | None, ...]:
    """Each region's mask (greyscale, white = the region) read from storage and decoded afresh, None for a
    box; RegionMaskMissing when one cannot be read."""
    found: list[Image.Image | None] = []
    for region in params.regions:
        if not region.mask:
            found.append(None)
            continue
        try:
            with asset_storage().open(region.mask, "rb") as f:
                data = f.read()
            image = decode_image(
                data,
                field="regions",
                formats=("PNG",),
                max_pixels=max(params.width * params.height, 1),
                not_readable="A region's mask could not be read.",
            )
        except (OSError, InvalidInput) as exc:
            raise RegionMaskMissing("A region's mask could not be read.") from exc
        found.append(image.convert("L"))
    return tuple(found)
