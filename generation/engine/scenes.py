"""Procedurally drawn scenes and their captions: the demo model's training data and its evaluation key.

Every scene is a flat background with one or two flat-coloured shapes, drawn with PIL and described in plain
English. Everything is a pure function of a seed, so training data never needs to be stored and a training
run is reproducible. Some colour–shape pairs are withheld from the training sampler (``HELD_OUT_PAIRS``); the
evaluation asks for exactly those, so it measures whether the model composes words it learnt separately
rather than recalling pictures it has seen.

Plain numpy/PIL: no torch here.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
SUPERSAMPLE = 4  # shapes are drawn at 4× and box-filtered down, for anti-aliased edges

# Strong, well-separated colours (nearest-palette classification needs every pair > ~100 apart in RGB).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 25),
    "orange": (255, 135, 0),
    "yellow": (255, 235, 20),
    "green": (20, 170, 40),
    "cyan": (0, 215, 235),
    "blue": (20, 50, 230),
    "purple": (135, 30, 200),
    "pink": (255, 110, 200),
    "white": (250, 250, 250),
    "black": (10, 10, 10),
}
COLOURS = list(PALETTE)
SHAPES = ["circle", "square", "triangle", "star", "ring", "cross"]
SIZES = ["small", "large"]

# Named positions: (column, row) in a 3×3 grid. The evaluation reads a shape's position back as the grid
# cell holding its mask's centroid, so every scene places its shape's centre well inside the named cell.
POSITIONS: dict[str, tuple[int, int]] = {
    "top left": (0, 0),
    "top": (1, 0),
    "top right": (2, 0),
    "left": (0, 1),
    "centre": (1, 1),
    "right": (2, 1),
    "bottom left": (0, 2),
    "bottom": (1, 2),
    "bottom right": (2, 2),
}
CELL_OF_POSITION = POSITIONS
POSITION_OF_CELL = {cell: name for name, cell in POSITIONS.items()}
RELATIONS = ["left of", "right of", "above", "below"]

# Withheld from the training sampler (as any object of any scene) and asked for by the evaluation. One per
# colour, every shape at least once, so each colour and each shape is still seen with most partners.
HELD_OUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {
        ("red", "star"),
        ("orange", "ring"),
        ("yellow", "cross"),
        ("green", "triangle"),
        ("cyan", "square"),
        ("blue", "circle"),
        ("purple", "ring"),
        ("pink", "square"),
        ("white", "triangle"),
        ("black", "star"),
    }
)
TRAIN_PAIRS: list[tuple[str, str]] = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in HELD_OUT_PAIRS]

# Object half-extent in pixels (at 64×64), by size word; two-object scenes use the middle size.
RADIUS = {"small": (6.0, 7.5), "large": (9.5, 11.0), "medium": (7.5, 8.5)}

# Paraphrases. The evaluation parses captions back, so every phrasing here maps to exactly one meaning.
SIZE_WORDS = {"small": ["small", "tiny", "little"], "large": ["large", "big"]}
POSITION_PHRASES: dict[str, list[str]] = {
    "centre": ["in the centre", "in the center", "in the middle", "at the centre"],
    "left": ["on the left", "at the left", "on the left side"],
    "right": ["on the right", "at the right", "on the right side"],
    "top": ["at the top", "near the top", "at the top edge"],
    "bottom": ["at the bottom", "near the bottom", "at the bottom edge"],
    "top left": ["in the top left corner", "at the top left", "in the upper left corner"],
    "top right": ["in the top right corner", "at the top right", "in the upper right corner"],
    "bottom left": ["in the bottom left corner", "at the bottom left", "in the lower left corner"],
    "bottom right": ["in the bottom right corner", "at the bottom right", "in the lower right corner"],
}
RELATION_PHRASES = {
    "left of": ["left of", "to the left of"],
    "right of": ["right of", "to the right of"],
    "above": ["above", "over"],
    "below": ["below", "under"],
}
SINGLE_TEMPLATES = [
    "{obj} {pos} on {a_bg} background",
    "{obj} {pos} on {a_bg} background",
    "{a_bg} background with {obj} {pos}",
    "{obj} {pos}, {bg} background",
    "on {a_bg} background, {obj} {pos}",
    "{obj} {pos} on {bg}",
]
PAIR_TEMPLATES = [
    "{a} {rel} {b} on {a_bg} background",
    "{a} {rel} {b}, {bg} background",
    "{a_bg} background with {a} {rel} {b}",
]
DEFAULT_BACKGROUND = "white"  # what a caption that names no background means


@dataclass(frozen=True)
class SceneObject:
    """One shape: what it is and where its centre lies (in pixels of the 64×64 image)."""

    shape: str
    colour: str
    size: str  # "small", "large", or "medium" in two-object scenes
    position: str  # a POSITIONS key: the cell its centre lies in
    cx: float
    cy: float
    radius: float


@dataclass(frozen=True)
class Scene:
    """What a caption asks for and the geometry drawn for it."""

    background: str
    objects: tuple[SceneObject, ...]
    relation: str | None  # for two-object scenes: objects[0] <relation> objects[1]
    caption: str


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def vocabulary() -> list[str]:
    """Every word any caption uses, so the tokenizer can hold each one as a single token."""
    words: set[str] = set(COLOURS) | set(SHAPES) | {"a", "an", "background", "with", "on"}
    for group in (SIZE_WORDS, POSITION_PHRASES, RELATION_PHRASES):
        for phrases in group.values():
            for phrase in phrases:
                words.update(phrase.split())
    return sorted(words)


# --- drawing ---------------------------------------------------------------------------------------------


def _shape_polygons(shape: str, cx: float, cy: float, r: float) -> list[list[tuple[float, float]]]:
    """Outline polygons of a shape (ring and circle are drawn as ellipses instead)."""
    if shape == "square":
        h = r * 0.85
        return [[(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]]
    if shape == "triangle":
        # Equilateral, pointing up, its bounding box centred on (cx, cy).
        side = 2 * r * 1.05
        height = side * math.sqrt(3) / 2
        top, bottom = cy - height / 2, cy + height / 2
        return [[(cx, top), (cx + side / 2, bottom), (cx - side / 2, bottom)]]
    if shape == "star":
        outer, inner = r * 1.12, r * 1.12 * 0.42
        points = []
        for k in range(10):
            rad = outer if k % 2 == 0 else inner
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + rad * math.cos(angle), cy + rad * math.sin(angle) + r * 0.08))
        return [points]
    if shape == "cross":
        a = r * 0.36
        return [
            [(cx - a, cy - r), (cx + a, cy - r), (cx + a, cy + r), (cx - a, cy + r)],
            [(cx - r, cy - a), (cx + r, cy - a), (cx + r, cy + a), (cx - r, cy + a)],
        ]
    raise ValueError(f"no polygon for {shape!r}")


def draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill: int | tuple
) -> None:
    """Draw one shape on a supersampled canvas (coordinates already scaled)."""
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "ring":
        width = max(1, round(r * 0.45))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=width)
    else:
        for poly in _shape_polygons(shape, cx, cy, r):
            draw.polygon(poly, fill=fill)


def render(scene: Scene, size: int = IMAGE_SIZE) -> np.ndarray:
    """The scene as a size×size×3 uint8 array."""
    big = size * SUPERSAMPLE
    scale = big / IMAGE_SIZE
    canvas = Image.new("RGB", (big, big), PALETTE[scene.background])
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        draw_shape(draw, obj.shape, obj.cx * scale, obj.cy * scale, obj.radius * scale, PALETTE[obj.colour])
    return np.asarray(canvas.resize((size, size), Image.Resampling.BOX))


def shape_template(shape: str, size: int = 24) -> np.ndarray:
    """A boolean mask of ``shape`` cropped to its bounding box and scaled to size×size: the evaluation's
    shape classifier compares a generated shape's mask with these."""
    big = 256
    canvas = Image.new("L", (big, big), 0)
    draw_shape(ImageDraw.Draw(canvas), shape, big / 2, big / 2, big * 0.4, 255)
    mask = np.asarray(canvas) > 127
    return crop_to_square(mask, size)


def crop_to_square(mask: np.ndarray, size: int) -> np.ndarray:
    """Crop a boolean mask to its bounding box and resample it to size×size (aspect is not kept, the same
    way for templates and samples)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return np.zeros((size, size), dtype=bool)
    crop = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.uint8) * 255
    resized = Image.fromarray(crop).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized) > 127


# --- sampling --------------------------------------------------------------------------------------------


def _centre_in_cell(rng: random.Random, cell: tuple[int, int], radius: float) -> tuple[float, float]:
    """A jittered point near the middle of a 3×3 grid cell, kept far enough in that the shape fits."""
    third = IMAGE_SIZE / 3
    out: list[float] = []
    for index in cell:
        centre = third * (index + 0.5) + rng.uniform(-3.0, 3.0)
        out.append(min(max(centre, radius + 1.0), IMAGE_SIZE - radius - 1.0))
    return out[0], out[1]


def _object_phrase(rng: random.Random, colour: str, shape: str, size: str | None) -> str:
    words = [colour, shape] if size is None else [rng.choice(SIZE_WORDS[size]), colour, shape]
    return f"{article(words[0])} {' '.join(words)}"


def single_scene(
    rng: random.Random,
    colour: str,
    shape: str,
    size: str,
    position: str,
    background: str,
    *,
    say_size: bool = True,
    say_position: bool = True,
    say_background: bool = True,
    template: int | None = None,
) -> Scene:
    """One shape; the caption may leave out its size, its position (meaning the centre) or the background
    (meaning white), so short prompts typed by people still mean something definite."""
    lo, hi = RADIUS[size]
    radius = rng.uniform(lo, hi)
    cx, cy = _centre_in_cell(rng, POSITIONS[position], radius)
    obj = SceneObject(shape, colour, size, position, cx, cy, radius)
    phrase = _object_phrase(rng, colour, shape, size if say_size else None)
    pos = rng.choice(POSITION_PHRASES[position]) if say_position else ""
    if say_background:
        index = template if template is not None else rng.randrange(len(SINGLE_TEMPLATES))
        caption = SINGLE_TEMPLATES[index].format(
            obj=phrase, pos=pos, bg=background, a_bg=f"{article(background)} {background}"
        )
    else:
        caption = f"{phrase} {pos}"
    return Scene(background, (obj,), None, " ".join(caption.replace(" ,", ",").split()))


def pair_scene(
    rng: random.Random,
    first: tuple[str, str],
    second: tuple[str, str],
    relation: str,
    background: str,
) -> Scene:
    """Two medium shapes side by side or one above the other: "a red circle left of a blue square"."""
    lo, hi = RADIUS["medium"]
    r1, r2 = rng.uniform(lo, hi), rng.uniform(lo, hi)
    along = [IMAGE_SIZE * 0.28 + rng.uniform(-2, 2), IMAGE_SIZE * 0.72 + rng.uniform(-2, 2)]
    across = [IMAGE_SIZE / 2 + rng.uniform(-6, 6), IMAGE_SIZE / 2 + rng.uniform(-6, 6)]
    if relation in ("right of", "below"):
        along.reverse()
    horizontal = relation in ("left of", "right of")
    objects = []
    for (colour, shape), r, a, c in zip((first, second), (r1, r2), along, across, strict=True):
        cx, cy = (a, c) if horizontal else (c, a)
        cell = (min(2, int(cx // (IMAGE_SIZE / 3))), min(2, int(cy // (IMAGE_SIZE / 3))))
        objects.append(SceneObject(shape, colour, "medium", POSITION_OF_CELL[cell], cx, cy, r))
    a_phrase = _object_phrase(rng, *first, None)
    b_phrase = _object_phrase(rng, *second, None)
    template = rng.choice(PAIR_TEMPLATES)
    caption = template.format(
        a=a_phrase,
        rel=rng.choice(RELATION_PHRASES[relation]),
        b=b_phrase,
        bg=background,
        a_bg=f"{article(background)} {background}",
    )
    return Scene(background, tuple(objects), relation, caption)


def training_scene(rng: random.Random) -> Scene:
    """A random training scene; never uses a held-out colour–shape pair."""
    background = rng.choice(COLOURS)
    allowed = [p for p in TRAIN_PAIRS if p[0] != background]
    if rng.random() < 0.25:
        first = rng.choice(allowed)
        second = rng.choice([p for p in allowed if p != first])
        return pair_scene(rng, first, second, rng.choice(RELATIONS), background)
    colour, shape = rng.choice(allowed)
    say_background = rng.random() > 0.05 or background == DEFAULT_BACKGROUND
    if not say_background:
        background = DEFAULT_BACKGROUND
        if colour == background:
            colour, shape = rng.choice([p for p in TRAIN_PAIRS if p[0] != background])
    say_position = rng.random() > 0.1
    position = rng.choice(list(POSITIONS)) if say_position else "centre"
    return single_scene(
        rng,
        colour,
        shape,
        rng.choice(SIZES),
        position,
        background,
        say_size=rng.random() > 0.15,
        say_position=say_position,
        say_background=say_background,
    )


def training_batch(seed: int, step: int, batch: int, stream: str = "") -> tuple[np.ndarray, list[str]]:
    """Batch ``step`` of the training stream ``stream`` from ``seed``: images (B×64×64×3 uint8) and
    captions.

    Each batch has its own generator (seeded from a string, which Python hashes with SHA-512, so it does
    not depend on PYTHONHASHSEED), so any batch can be regenerated alone."""
    rng = random.Random(f"{stream}:{seed}:{step}")  # noqa: S311 - data synthesis, not security
    scenes = [training_scene(rng) for _ in range(batch)]
    return np.stack([render(s) for s in scenes]), [s.caption for s in scenes]


def training_scenes(seed: int) -> Iterator[Scene]:
    """An endless stream of training scenes (for inspection and tests)."""
    rng = random.Random(seed)  # noqa: S311 - data synthesis, not security
    while True:
        yield training_scene(rng)


def evaluation_scenes(count: int, seed: int = 1234, *, held_out: bool = True) -> list[Scene]:
    """``count`` single-shape prompts, every one a colour–shape pair the training sampler never draws,
    cycling through the held-out pairs with a random size, position, background and phrasing.

    ``held_out=False`` draws from the training pairs instead: a validation set for choosing settings such
    as the default guidance without looking at the held-out pairs."""
    rng = random.Random(seed)  # noqa: S311 - data synthesis, not security
    pairs = sorted(HELD_OUT_PAIRS if held_out else TRAIN_PAIRS)
    rng.shuffle(pairs)
    scenes = []
    for i in range(count):
        colour, shape = pairs[i % len(pairs)]
        background = rng.choice([c for c in COLOURS if c != colour])
        scenes.append(
            single_scene(rng, colour, shape, rng.choice(SIZES), rng.choice(list(POSITIONS)), background)
        )
    return scenes


# --- reading captions back --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """What a single-shape caption asks for; ``None`` where the caption leaves it open."""

    background: str
    colour: str
    shape: str
    position: str
    size: str | None


def parse(caption: str) -> Expected:
    """Read a single-shape caption back into its attributes (the evaluation's key, independent of how the
    scene that produced it was drawn)."""
    text = " ".join(caption.lower().replace(",", " ").split())
    words = text.split()
    background = DEFAULT_BACKGROUND
    for i, w in enumerate(words):
        if w in PALETTE and (
            (i + 1 < len(words) and words[i + 1] == "background") or (i > 0 and words[i - 1] == "on")
        ):
            background = w
    shape = next((w for w in words if w in SHAPES), None)
    if shape is None:
        raise ValueError(f"no shape in {caption!r}")
    shape_at = words.index(shape)
    colour = words[shape_at - 1]
    if colour not in PALETTE:
        raise ValueError(f"no colour before the shape in {caption!r}")
    size = next((s for s, synonyms in SIZE_WORDS.items() if words[shape_at - 2] in synonyms), None)
    position = "centre"
    padded = f" {text} "
    for name, phrases in POSITION_PHRASES.items():
        # "at the top left" also contains "at the top": a corner's match wins over an edge's.
        if any(f" {p} " in padded for p in phrases):
            if len(name.split()) == 2 or len(position.split()) < 2:
                position = name
    return Expected(background, colour, shape, position, size)
