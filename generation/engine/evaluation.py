"""Does the demo model draw what it is asked for? Pixel statistics on generated pictures.

The prompts are single-shape captions whose colour–shape pair the training sampler never drew
(``scenes.evaluation_scenes``), generated through the studio's own job path (``runner.generate``: registry
metadata, pipeline cache, scheduler by friendly name, one CPU generator per seed). Each picture is read back
with no knowledge of its prompt (``read_image``) and compared with what the prompt says (``scenes.parse``):

* background: the median colour of the 2-pixel border, named by the nearest palette colour;
* object mask: pixels farther than ``MASK_DISTANCE`` (RGB, 0–255) from that border colour, largest
  8-connected component (fewer than ``MIN_AREA`` pixels counts as "no object": every object check fails);
* object colour: the median of the mask's more saturated half (pixels at least as far from the background
  as the mask's median, which drops blended edge pixels), named by the nearest palette colour;
* position: the 3×3 grid cell that holds the mask's centroid;
* shape: template matching. The mask is cropped to its bounding box and resampled to 24×24, and compared
  with each shape drawn by the scene renderer and treated the same way; the shape with the highest
  intersection-over-union wins. Holes are kept, so a ring differs from a disc; the bounding-box crop makes
  it size- and position-independent. On rendered (true) scenes it is right on over 99% of pictures (see
  the tests).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from . import scenes

TARGETS: dict[str, float] = {"background": 0.90, "colour": 0.80, "position": 0.70, "shape": 0.60}
CHECK_LABELS = {
    "background": "background colour",
    "colour": "object colour",
    "position": "position",
    "shape": "shape",
}
MASK_DISTANCE = 60.0
MIN_AREA = 12
TEMPLATE_SIZE = 24

_PALETTE_NAMES = list(scenes.PALETTE)
_PALETTE_RGB = np.array([scenes.PALETTE[c] for c in _PALETTE_NAMES], dtype=np.float32)


def nearest_colour(rgb: np.ndarray) -> str:
    return _PALETTE_NAMES[int(np.argmin(np.linalg.norm(_PALETTE_RGB - rgb, axis=1)))]


@cache
def _templates() -> dict[str, np.ndarray]:
    return {shape: scenes.shape_template(shape, TEMPLATE_SIZE) for shape in scenes.SHAPES}


def classify_shape(mask: np.ndarray) -> str:
    """The scene shape whose bounding-box-normalised template overlaps ``mask`` best (IoU)."""
    sample = scenes.crop_to_square(mask, TEMPLATE_SIZE)
    best, best_iou = scenes.SHAPES[0], -1.0
    for shape, template in _templates().items():
        union = np.logical_or(sample, template).sum()
        iou = np.logical_and(sample, template).sum() / union if union else 0.0
        if iou > best_iou:
            best, best_iou = shape, float(iou)
    return best


@dataclass(frozen=True)
class Reading:
    """What the pixels show. ``None`` where no object was found."""

    background: str
    colour: str | None
    position: str | None
    shape: str | None
    area: int


def read_image(image: np.ndarray) -> Reading:
    """Read a H×W×3 uint8 picture back into background, colour, position and shape (see module doc)."""
    rgb = image[..., :3].astype(np.float32)
    h, w = rgb.shape[:2]
    border = np.concatenate(
        [
            rgb[:2].reshape(-1, 3),
            rgb[-2:].reshape(-1, 3),
            rgb[:, :2].reshape(-1, 3),
            rgb[:, -2:].reshape(-1, 3),
        ]
    )
    bg_rgb = np.median(border, axis=0)
    background = nearest_colour(bg_rgb)
    distance = np.linalg.norm(rgb - bg_rgb, axis=2)
    labels, count = ndimage.label(distance > MASK_DISTANCE, structure=np.ones((3, 3)))
    if count == 0:
        return Reading(background, None, None, None, 0)
    sizes = np.bincount(labels.ravel())[1:]
    mask = labels == (int(np.argmax(sizes)) + 1)
    area = int(mask.sum())
    if area < MIN_AREA:
        return Reading(background, None, None, None, area)
    core = mask & (distance >= np.median(distance[mask]))
    object_rgb = np.median(rgb[core], axis=0)
    colour = nearest_colour(object_rgb)
    # The outline at half contrast (half-covered pixels), near the object: a fixed threshold fattens
    # high-contrast shapes and thins low-contrast ones, which blurs a cross into a disc.
    half = 0.5 * float(np.linalg.norm(object_rgb - bg_rgb))
    near = ndimage.binary_dilation(mask, iterations=2)
    outline = near & (distance > max(half, MASK_DISTANCE / 2))
    if outline.sum() >= MIN_AREA:
        mask = outline
    ys, xs = np.nonzero(mask)
    cell = (min(2, int((xs.mean() + 0.5) * 3 / w)), min(2, int((ys.mean() + 0.5) * 3 / h)))
    return Reading(background, colour, scenes.POSITION_OF_CELL[cell], classify_shape(mask), area)


@dataclass(frozen=True)
class Check:
    """One picture: its prompt and seed, what the prompt asks for, and what the pixels show."""

    prompt: str
    seed: int
    expected: scenes.Expected
    reading: Reading

    def right(self) -> dict[str, bool]:
        e, r = self.expected, self.reading
        return {
            "background": r.background == e.background,
            "colour": r.colour == e.colour,
            "position": r.position == e.position,
            "shape": r.shape == e.shape,
        }


@dataclass
class EvalResult:
    checks: list[Check]
    images: list[Image.Image]
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def scores(self) -> dict[str, float]:
        if not self.checks:
            return dict.fromkeys(TARGETS, 0.0)
        rights = [c.right() for c in self.checks]
        return {key: sum(r[key] for r in rights) / len(rights) for key in TARGETS}

    def failures(self, targets: dict[str, float] = TARGETS) -> list[str]:
        """The checks whose score is under its target."""
        scores = self.scores()
        return [key for key, target in targets.items() if scores[key] < target]

    def shape_breakdown(self) -> dict[str, tuple[int, int]]:
        """Per asked-for shape: (right, asked)."""
        out: dict[str, tuple[int, int]] = {}
        for c in self.checks:
            right, asked = out.get(c.expected.shape, (0, 0))
            out[c.expected.shape] = (right + c.right()["shape"], asked + 1)
        return out


def read_checks(prompts: list[str], seeds: list[int], images: list[np.ndarray]) -> list[Check]:
    return [
        Check(prompt, seed, scenes.parse(prompt), read_image(image))
        for prompt, seed, image in zip(prompts, seeds, images, strict=True)
    ]


class _NoHooks:
    """The job hooks ``runner.generate`` expects, doing nothing (no previews, never cancelled)."""

    def on_step(self, step: int, total: int) -> None:
        return None

    def wants_preview(self, step: int, total: int) -> bool:
        return False

    def on_preview(self, step: int, total: int, rgb: np.ndarray) -> None:
        return None

    def should_cancel(self) -> bool:
        return False


def evaluate(
    model_path: Path,
    prompts: int = 40,
    seeds: int = 4,
    *,
    steps: int | None = None,
    guidance: float | None = None,
    scheduler: str | None = None,
    held_out: bool = True,
) -> EvalResult:
    """Generate ``prompts`` held-out prompts × ``seeds`` seeds (0…seeds-1) with the model's defaults
    (unless overridden) through ``runner.generate``, and read every picture back. ``held_out=False``: the
    validation prompts (training colour–shape pairs) instead."""
    from .registry import load_model_info
    from .runner import generate, text_request

    info = load_model_info(Path(model_path))
    settings: dict[str, Any] = {
        "steps": steps or info.default_steps,
        "guidance": guidance if guidance is not None else info.default_guidance,
        "scheduler": scheduler or info.default_scheduler,
        "size": f"{info.default_width}×{info.default_height}",
        "prompts": prompts,
        "seeds": seeds,
        "set": "held-out" if held_out else "validation",
    }
    checks: list[Check] = []
    images: list[Image.Image] = []
    started = time.perf_counter()
    for scene in scenes.evaluation_scenes(prompts, held_out=held_out):
        request = text_request(
            info,
            scene.caption,
            steps=int(settings["steps"]),
            guidance_scale=float(settings["guidance"]),
            scheduler=str(settings["scheduler"]),
            num_images=seeds,
        )
        result = generate(request, _NoHooks())
        images += result.images
        arrays = [np.asarray(img.convert("RGB")) for img in result.images]
        checks += read_checks([scene.caption] * len(arrays), result.seeds, arrays)
    return EvalResult(checks, images, settings, time.perf_counter() - started)


def table(result: EvalResult, targets: dict[str, float] = TARGETS) -> str:
    """The scores against their targets, and shape accuracy per shape, as fixed-width text."""
    s = result.settings
    scores = result.scores()
    lines = [
        f"{s.get('prompts')} {s.get('set', 'held-out')} prompts × {s.get('seeds')} seeds = "
        f"{len(result.checks)} images "
        f"({s.get('steps')} {s.get('scheduler')} steps, guidance {s.get('guidance')}, {s.get('size')}; "
        f"{result.seconds:.1f} s)",
        "",
        f"{'check':<20}{'right':>8}{'target':>9}   result",
    ]
    for key, target in targets.items():
        verdict = "pass" if scores[key] >= target else "FAIL"
        lines.append(
            f"{CHECK_LABELS[key]:<20}{scores[key]:>8.1%}{'≥ ' + format(target, '.0%'):>9}   {verdict}"
        )
    breakdown = ", ".join(f"{shape} {r}/{n}" for shape, (r, n) in sorted(result.shape_breakdown().items()))
    lines += ["", f"shape right, per shape asked for: {breakdown}"]
    return "\n".join(lines)


def contact_sheet(result: EvalResult, tile: int = 96) -> Image.Image:
    """One row per prompt: the prompt, then its pictures, each with its four checks (a green lower-case
    letter when right, a red capital when wrong)."""
    font = ImageFont.load_default(size=11)
    text_width, pad, label = 260, 6, 14
    per_row = max(1, int(result.settings.get("seeds", 1)))
    rows = [result.checks[i : i + per_row] for i in range(0, len(result.checks), per_row)]
    row_h = tile + label + pad
    sheet = Image.new("RGB", (text_width + per_row * (tile + pad) + pad, len(rows) * row_h + pad), "white")
    draw = ImageDraw.Draw(sheet)
    index = 0
    for r, row in enumerate(rows):
        y = pad + r * row_h
        words, line, lines = row[0].prompt.split(), "", []
        for word in words:
            if draw.textlength(f"{line} {word}", font=font) > text_width - 2 * pad:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}".strip()
        lines.append(line)
        draw.multiline_text((pad, y), "\n".join(lines), fill="black", font=font, spacing=2)
        for c, check in enumerate(row):
            x = text_width + c * (tile + pad)
            sheet.paste(
                result.images[index].convert("RGB").resize((tile, tile), Image.Resampling.NEAREST), (x, y)
            )
            index += 1
            # One letter per check (background, colour, position, shape): green right, red wrong. Plain
            # letters: the default font has no tick or cross glyphs.
            mx = x
            for key, ok in check.right().items():
                mark = key[0] if ok else key[0].upper()
                draw.text((mx, y + tile + 1), mark, fill="darkgreen" if ok else "firebrick", font=font)
                mx += int(draw.textlength(mark + " ", font=font))
    return sheet


def time_generation(
    model_path: Path, runs: int = 5, prompt: str = "a large red circle in the centre"
) -> float:
    """Median seconds for one picture at the model's defaults (native size, default steps, scheduler and
    guidance) through ``runner.generate``, after one warm-up run that loads the pipeline."""
    from .registry import load_model_info
    from .runner import generate, text_request

    info = load_model_info(Path(model_path))
    request = text_request(info, prompt)
    generate(request, _NoHooks())
    return float(np.median([generate(request, _NoHooks()).gpu_seconds for _ in range(runs)]))
