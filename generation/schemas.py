"""The declared types of generation: what a job request may hold, the parameters a job runs with, and the
API's answers about models and jobs.

One job specification travels the whole way: the API and the generate page send a ``JobRequest`` (one shape
per mode); ``services.check_job`` resolves it against the model into ``JobParams`` — every value as used, the
seed included — which is stored on the job row, read back by the worker and handed to the engine. A new job
parameter is a field of ``JobFields`` (with its limits and default), the engine's use of it, and the form's
input; nothing else copies it.

The schema also lists what is installed now (model ids, schedulers, LoRAs and the sizes the models make), so a
client that generates values from it sends values the studio takes.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from gallery.schemas import AssetOut
from studio.fields import Messages, Moment, Real, Text, Whole
from studio.pagination import UUID_CURSOR

from .engine import registry
from .engine.families import MAX_GUIDANCE, MAX_STEPS

MAX_PROMPT = 2000
MAX_SEED = 2**32 - 1
MAX_IMAGES = 8
MAX_LORAS = 5
LORA_WEIGHT = (-2.0, 2.0)
MAX_CONTROLNET_UNITS = 4
CONTROLNET_WEIGHT = (0.0, 2.0)
SIZE_MULTIPLE = 8
SIZE_LIMITS = (8, 8192)  # the widest any family allows; each model's own limits are checked at submit
MASK_PREFIX = "data:image/png;base64,"
MASK_MAX_CHARS = 8 * 1024 * 1024
EMPTY_MASK = "Paint the area to repaint first."
NO_SUCH_ASSET = "No such asset."

Mode = Literal["txt2img", "img2img", "inpaint", "outpaint", "variation", "upscale"]
# The controls beyond a mode that a model may take (``ModelOut.features``).
Feature = Literal["controlnet", "reference", "ip_adapter", "regions"]
MODE_LABELS: dict[str, str] = {
    "txt2img": "Text to image",
    "img2img": "Image to image",
    "inpaint": "Inpainting",
    "outpaint": "Extend canvas",
    "variation": "Variations",
    "upscale": "Upscaling",
}
Variation = Literal["subtle", "strong"]
UpscaleFactor = Literal[2, 4]


# --- what is installed, as the schema shows it --


class Installed:
    """JSON-schema metadata: the value is one of what is installed now (``models``, ``schedulers``,
    ``loras``, ``ip_adapters`` or ``controlnets``), read when the schema is generated."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def choices(self) -> list[str]:
        models = registry.list_models()
        if self.kind == "models":
            return sorted(m.id for m in models)
        if self.kind == "schedulers":
            return sorted({name for m in models for name in m.schedulers})
        if self.kind == "ip_adapters":
            return sorted(adapter.id for adapter in registry.list_ip_adapters())
        if self.kind == "controlnets":
            return sorted(c.id for c in registry.list_controlnets())
        return sorted(lora.id for lora in registry.list_loras())

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = dict(handler(core_schema))
        choices = self.choices()
        if choices:
            schema["enum"] = choices
        else:
            schema["not"] = {}  # nothing is installed: no value is valid
        return schema


class InstalledSizes:
    """JSON-schema metadata for an image side: the range the installed models make, in steps of 8."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = dict(handler(core_schema))
        models = registry.list_models()
        if models:
            schema["minimum"] = min(m.min_size for m in models)
            schema["maximum"] = max(m.max_size for m in models)
        return schema


ModelId = Annotated[str, Field(max_length=200), Installed("models")]
SchedulerName = Annotated[str, Field(max_length=100), Installed("schedulers")]
Side = Annotated[int, Whole(*SIZE_LIMITS), Field(multiple_of=SIZE_MULTIPLE), InstalledSizes()]
Prompt = Annotated[str, Text(MAX_PROMPT, required=True)]
StartImage = Annotated[
    uuid.UUID,
    Messages(missing="Choose a start image.", uuid_parsing=NO_SUCH_ASSET, uuid_type=NO_SUCH_ASSET),
    Field(description="An image of the job's project (made here or uploaded) to start from."),
]
Strength = Annotated[
    Annotated[float, Real(0, 1)],
    Field(gt=0, description="How much of the start image is repainted (at least one step always is)."),
]
Mask = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MASK_MAX_CHARS,
        pattern=r"^data:image/png;base64,",
        description="A PNG data URL of the start image's size: white = repaint, black or transparent = keep.",
    ),
    Messages(
        missing=EMPTY_MASK,
        string_too_short=EMPTY_MASK,
        string_pattern_mismatch="Send the mask as a PNG data URL (data:image/png;base64,…).",
        string_too_long="The mask is too large.",
    ),
]


Margin = Annotated[int, Whole(0, SIZE_LIMITS[1]), Field(multiple_of=SIZE_MULTIPLE)]
ASPECT_PATTERN = r"^[1-9][0-9]{0,2}:[1-9][0-9]{0,2}$"


class Extend(BaseModel):
    """How many pixels an outpainting adds on each side of its start image (multiples of 8)."""

    model_config = ConfigDict(extra="forbid")
    left: Margin = 0
    right: Margin = 0
    top: Margin = 0
    bottom: Margin = 0

    def sides(self) -> tuple[int, int, int, int]:
        return (self.left, self.right, self.top, self.bottom)


Aspect = Annotated[
    str,
    Field(
        pattern=ASPECT_PATTERN,
        description='A target aspect ratio, width:height (e.g. "16:9"): the canvas grows evenly on the sides '
        "it must, the start image centred.",
    ),
    Messages(string_pattern_mismatch='Give the aspect ratio as width:height, e.g. "16:9".'),
]


class LoraRef(BaseModel):
    """An installed LoRA applied to this job only."""

    model_config = ConfigDict(extra="forbid")
    id: Annotated[str, Field(max_length=200), Installed("loras")]
    weight: Annotated[float, Real(*LORA_WEIGHT)] = 1.0


LoraList = Annotated[
    list[LoraRef],
    Field(max_length=MAX_LORAS),
    Messages(
        too_long=f"At most {MAX_LORAS} LoRAs at once.",
        list_type='Give a list of {"id": LoRA id, "weight": number}.',
    ),
]


# --- regional prompts: a prompt for a part of the image (generation/regions.py checks them) --

MAX_REGIONS = 8
REGION_WEIGHT = (0.0, 2.0)
EMPTY_REGION = "Paint the region first."
ONE_OF_BOX_AND_MASK = (
    "Give each region exactly one of box ([x0, y0, x1, y1] in pixels) and mask (a PNG data URL)."
)
RegionPrompt = Annotated[str, Text(MAX_PROMPT, required=True)]
RegionWeight = Annotated[
    Annotated[float, Real(*REGION_WEIGHT)],
    Field(
        description="How strongly the region's prompt wins over the job's prompt inside it (0: not at all)."
    ),
]
Box = Annotated[
    list[Annotated[int, Whole(0, SIZE_LIMITS[1])]],
    Field(
        min_length=4,
        max_length=4,
        description="[x0, y0, x1, y1] in pixels of the output image, x0 < x1 ≤ width and y0 < y1 ≤ height.",
    ),
    Messages(too_short="Give the box as [x0, y0, x1, y1].", too_long="Give the box as [x0, y0, x1, y1]."),
]
RegionMask = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MASK_MAX_CHARS,
        pattern=r"^data:image/png;base64,",
        description="A PNG data URL of the image's size (or its aspect ratio: it is scaled): white = the "
        "region, black or transparent = elsewhere.",
    ),
    Messages(
        missing=EMPTY_REGION,
        string_too_short=EMPTY_REGION,
        string_pattern_mismatch="Send the mask as a PNG data URL (data:image/png;base64,…).",
        string_too_long="The mask is too large.",
    ),
]


# How a ControlNet unit's control image becomes its control map (generation/engine/control.py runs them in
# the worker): edges, line art from a sketch (dark lines on white become white on black), a scribble or a map
# used as it is; depth and pose are drawn by an annotator model an admin installed (generation/engine/
# annotators.py), and offered only while one of that kind is (library.available_preprocessors). A new
# preprocessor is a name here and its function in control.PREPROCESSORS.
Preprocessor = Literal["canny", "lineart", "scribble", "none", "depth", "pose"]
PREPROCESSOR_LABELS: dict[str, str] = {
    "canny": "Canny edges",
    "lineart": "Line art (dark lines on white)",
    "scribble": "Scribble (white on black)",
    "none": "None: the image is the map",
    "depth": "Depth (an installed depth annotator)",
    "pose": "Pose (an installed pose annotator)",
}
ControlImage = Annotated[
    uuid.UUID,
    Messages(missing="Choose a control image.", uuid_parsing=NO_SUCH_ASSET, uuid_type=NO_SUCH_ASSET),
    Field(description="An image of the job's project (made here or uploaded) the control map is made from."),
]
Share = Annotated[float, Real(0, 1)]


class ControlNetRef(BaseModel):
    """A ControlNet unit: an installed ControlNet steering this job from a control image's map."""

    model_config = ConfigDict(extra="forbid")
    id: Annotated[str, Field(max_length=200), Installed("controlnets")] = Field(
        description="An installed ControlNet that fits the model (GET /api/v1/models lists them per model)."
    )
    image: ControlImage
    preprocessor: Preprocessor = Field("none", description="How the image becomes the control map.")
    weight: Annotated[float, Real(*CONTROLNET_WEIGHT)] = Field(1.0, description="How strongly it steers.")
    start: Share = Field(0.0, description="The share of the steps at which it starts steering.")
    end: Share = Field(1.0, description="The share of the steps at which it stops (after start).")


ControlNetList = Annotated[
    list[ControlNetRef],
    Field(max_length=MAX_CONTROLNET_UNITS, description="ControlNet units, applied together."),
    Messages(
        too_long=f"At most {MAX_CONTROLNET_UNITS} ControlNets at once.",
        list_type='Give a list of {"id": ControlNet id, "image": asset id, …}.',
    ),
]


# --- reference images (generation/engine/reference.py; IP-Adapters: generation/engine/ip_adapter.py) --

MAX_JOB_REFERENCES = 4
ReferenceKind = Literal["reference", "ip_adapter"]
REFERENCE_WEIGHT = (0.0, 2.0)


class ReferenceRef(BaseModel):
    """An image of the job's project that steers the job: ``reference`` attends to it inside the model
    (no extra weights; ``fidelity`` says how closely guidance follows it), ``ip_adapter`` feeds it through
    an installed IP-Adapter."""

    model_config = ConfigDict(extra="forbid")
    image: Annotated[
        uuid.UUID,
        Messages(missing="Choose a reference image.", uuid_parsing=NO_SUCH_ASSET, uuid_type=NO_SUCH_ASSET),
    ] = Field(description="An image of the job's project (made here or uploaded).")
    kind: ReferenceKind = "reference"
    weight: Annotated[float, Real(*REFERENCE_WEIGHT)] = Field(
        1.0, description="How much the reference counts (0: not at all; 1: like the image's own content)."
    )
    fidelity: Annotated[float, Real(0, 1)] = Field(
        0.5,
        description="Style fidelity, for kind reference only: how strongly guidance follows the reference "
        "(0: the prompt has more say; 1: closest to the reference).",
    )
    ip_adapter: Annotated[str, Field(max_length=200), Installed("ip_adapters")] | None = Field(
        None, description="For kind ip_adapter: an installed IP-Adapter's id (default: the model's family's)."
    )


ReferenceList = Annotated[
    list[ReferenceRef],
    Field(max_length=MAX_JOB_REFERENCES),
    Messages(
        too_long=f"At most {MAX_JOB_REFERENCES} reference images at once.",
        list_type='Give a list of {"image": asset id, "kind", "weight", "fidelity"}.',
    ),
]


class BoxRegion(BaseModel):
    """A region given as a rectangle."""

    model_config = ConfigDict(extra="forbid")
    union_tag: ClassVar[str] = "box_region"
    box: Box
    prompt: RegionPrompt
    weight: RegionWeight = 1.0


class MaskRegion(BaseModel):
    """A region given as a painted mask."""

    model_config = ConfigDict(extra="forbid")
    union_tag: ClassVar[str] = "mask_region"
    mask: RegionMask
    prompt: RegionPrompt
    weight: RegionWeight = 1.0


def region_kind(value: Any) -> str | None:
    """Which shape a region has (its model's ``union_tag``), None when it has both a box and a mask or
    neither."""
    if isinstance(value, dict):
        has_box, has_mask = "box" in value, "mask" in value
    else:
        has_box, has_mask = hasattr(value, "box"), hasattr(value, "mask")
    if has_box == has_mask:
        return None
    return BoxRegion.union_tag if has_box else MaskRegion.union_tag


Region = Annotated[
    Annotated[BoxRegion, Tag(BoxRegion.union_tag)] | Annotated[MaskRegion, Tag(MaskRegion.union_tag)],
    Discriminator(region_kind, custom_error_type="region_shape", custom_error_message=ONE_OF_BOX_AND_MASK),
]
RegionList = Annotated[
    list[Region],
    Field(
        max_length=MAX_REGIONS,
        description="Prompts for parts of the image; the job's prompt applies everywhere, and alone where no "
        "region is.",
    ),
    Messages(too_long=f"At most {MAX_REGIONS} regions.", list_type="Give a list of regions."),
]


class RegionUse(BaseModel):
    """A region as a job runs it: its box, or its mask (stored apart, named here, with its sha256)."""

    box: list[int] | None = None
    mask: str | None = Field(None, description="Where the region's mask is stored.")
    mask_sha256: str | None = None
    prompt: str
    weight: float = 1.0

    def key(self) -> tuple[Any, ...]:
        return (tuple(self.box or ()), self.mask_sha256, self.prompt, round(self.weight, 4))


# --- a job request, one shape per mode --


class JobFields(BaseModel):
    """What every job takes. A field given a static default here reaches the engine as it is."""

    model_config = ConfigDict(extra="forbid")
    union_tag: ClassVar[str] = ""  # each mode's shape names its mode

    prompt: Prompt
    negative_prompt: Annotated[str, Text(MAX_PROMPT)] | None = None
    model: ModelId | None = Field(
        None, description="A model id from GET /api/v1/models (default: the site's)."
    )
    steps: Annotated[int, Whole(1, MAX_STEPS)] | None = Field(
        None, description="Denoising steps (default: the model's)."
    )
    guidance_scale: Annotated[float, Real(0, MAX_GUIDANCE)] | None = Field(
        None, description="Default: the model's."
    )
    seed: Annotated[int, Whole(0, MAX_SEED)] | None = Field(
        None, description="Default: random; the seed used is recorded."
    )
    scheduler: SchedulerName | None = Field(None, description="One of the model's schedulers.")
    num_images: Annotated[int, Whole(1, MAX_IMAGES)] = 1
    loras: LoraList | None = None
    # Project styles (generation/styles.py applies them).
    style: Annotated[int, Whole(1, 2**31 - 1)] | None = Field(
        None, description="A style id from GET /api/v1/projects/{slug}/styles: its prompt, model and LoRAs."
    )
    prompt_prefix: Annotated[str, Text(MAX_PROMPT)] | None = Field(
        None, description="Replaces the style's prompt prefix (unless the style locks it)."
    )
    prompt_suffix: Annotated[str, Text(MAX_PROMPT)] | None = Field(
        None, description="Replaces the style's prompt suffix (unless the style locks it)."
    )


class SizedFields(JobFields):
    width: Side | None = Field(None, description="Default: the model's, or the start image's fitted.")
    height: Side | None = Field(None, description="Default: the model's, or the start image's fitted.")


class Txt2ImgRequest(SizedFields):
    union_tag: ClassVar[str] = "txt2img"
    mode: Literal["txt2img"] = "txt2img"
    regions: RegionList | None = None
    references: ReferenceList | None = None
    controlnets: ControlNetList | None = None


class Img2ImgRequest(SizedFields):
    union_tag: ClassVar[str] = "img2img"
    mode: Literal["img2img"]
    init_asset: StartImage
    strength: Strength | None = Field(None, description="Default 0.6.")
    regions: RegionList | None = None
    references: ReferenceList | None = None
    controlnets: ControlNetList | None = None


class InpaintRequest(SizedFields):
    union_tag: ClassVar[str] = "inpaint"
    mode: Literal["inpaint"]
    init_asset: StartImage
    mask: Mask
    mask_blur: Annotated[int, Whole(0, 64)] = Field(
        2, description="The soft edge, in pixels, where the repainted area meets the kept image."
    )
    strength: Strength | None = Field(None, description="Default 0.85.")
    regions: RegionList | None = None
    references: ReferenceList | None = None
    controlnets: ControlNetList | None = None


class OutpaintRequest(JobFields):
    union_tag: ClassVar[str] = "outpaint"
    mode: Literal["outpaint"]
    init_asset: StartImage
    extend: Extend | None = Field(
        None, description="Pixels to add on each side (multiples of 8, at least one side); or give aspect."
    )
    aspect: Aspect | None = None
    mask_blur: Annotated[int, Whole(0, 64)] = Field(
        8, description="The soft seam, in pixels, where the new area meets the start image (kept exactly)."
    )


class VariationRequest(SizedFields):
    union_tag: ClassVar[str] = "variation"
    mode: Literal["variation"]
    prompt: Annotated[str, Text(MAX_PROMPT)] | None = Field(None, description="Default: the start image's.")  # type: ignore[assignment]
    init_asset: StartImage
    variation: Variation = "subtle"
    strength: Strength | None = Field(None, description="Default: 0.3 subtle, 0.6 strong.")


class UpscaleRequest(JobFields):
    union_tag: ClassVar[str] = "upscale"
    mode: Literal["upscale"]
    prompt: Annotated[str, Text(MAX_PROMPT)] | None = Field(None, description="Default: the start image's.")  # type: ignore[assignment]
    init_asset: StartImage
    scale: UpscaleFactor = 2
    strength: Strength | None = Field(None, description="Default 0.3.")


REQUESTS: tuple[type[JobFields], ...] = (
    Txt2ImgRequest,
    Img2ImgRequest,
    InpaintRequest,
    OutpaintRequest,
    VariationRequest,
    UpscaleRequest,
)


def _only_used_for(field: str) -> str:
    modes = [MODE_LABELS[r.union_tag].lower() for r in REQUESTS if field in r.model_fields]
    return f"Only used for {', '.join(modes)}."


def _unknown_field_sentences() -> None:
    """A field that belongs to other modes says which ones, rather than just "Unknown field."."""
    every = {name for r in REQUESTS for name in r.model_fields}
    for request in REQUESTS:
        foreign = {name: _only_used_for(name) for name in every - set(request.model_fields)}
        if request is Txt2ImgRequest:
            foreign["init_asset"] = "Text to image starts from no image; choose another mode."
        if request is UpscaleRequest:
            for side in ("width", "height"):
                foreign[side] = "An upscale's size is its start image's size times the scale; leave it out."
        if request is OutpaintRequest:
            for side in ("width", "height"):
                foreign[side] = "An outpainting's size is its start image's plus the extent; leave it out."
        request.unknown_fields = foreign  # type: ignore[attr-defined]


_unknown_field_sentences()


def job_mode(value: Any) -> str:
    """The request's mode, the tag that picks its shape (text to image when it is left out)."""
    if isinstance(value, dict):
        mode = value.get("mode", "txt2img")
    else:
        mode = getattr(value, "mode", None)
    return mode if isinstance(mode, str) and mode else ("txt2img" if mode is None else "?")


JobRequest = Annotated[
    Annotated[Txt2ImgRequest, Tag("txt2img")]
    | Annotated[Img2ImgRequest, Tag("img2img")]
    | Annotated[InpaintRequest, Tag("inpaint")]
    | Annotated[OutpaintRequest, Tag("outpaint")]
    | Annotated[VariationRequest, Tag("variation")]
    | Annotated[UpscaleRequest, Tag("upscale")],
    Discriminator(
        job_mode,
        custom_error_type="mode_invalid",
        custom_error_message=f"Choose one of: {', '.join(MODE_LABELS)}.",
        custom_error_context={"field": "mode"},
    ),
]


# --- the parameters a job runs with --


class LoraUse(BaseModel):
    id: str
    weight: float
    sha256: str = ""


class IpAdapterUse(BaseModel):
    id: str
    name: str
    sha256: str = ""


class ReferenceUse(BaseModel):
    """A reference image as a job uses it: the asset, its kind, weight and fidelity (kind reference), the
    image's sha256 and, for kind ip_adapter, the IP-Adapter."""

    image: uuid.UUID
    kind: ReferenceKind = "reference"
    weight: float = 1.0
    fidelity: float | None = None
    sha256: str = ""
    ip_adapter: IpAdapterUse | None = None

    def key(self) -> tuple[Any, ...]:
        adapter = self.ip_adapter.id if self.ip_adapter else None
        fidelity = None if self.fidelity is None else round(self.fidelity, 4)
        return (str(self.image), self.kind, round(self.weight, 4), fidelity, adapter)


class ControlNetUse(BaseModel):
    """A ControlNet unit as the job runs it (``library.check_controlnets``): the ControlNet's name and sha256
    for provenance, the control image's asset id."""

    id: str
    name: str = ""
    sha256: str = ""
    image: uuid.UUID
    preprocessor: str = "none"
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0

    def settings(self) -> tuple[Any, ...]:
        """What a pipeline call takes once for all its images (its control images are per image)."""
        return (self.id, self.preprocessor, round(self.weight, 4), round(self.start, 4), round(self.end, 4))


class StyleUse(BaseModel):
    """The style a job was made with, and its version then."""

    id: int
    name: str
    version: int


class JobParams(BaseModel):
    """Every parameter of a job as it runs: stored on the job row, shown in the API, read by the worker
    and the engine. The image modes' fields are None for text to image."""

    model_config = ConfigDict(extra="ignore")

    mode: Mode = "txt2img"
    prompt: str
    negative_prompt: str = ""
    model: str = ""
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int
    scheduler: str
    num_images: int = 1
    loras: list[LoraUse] = []
    init_asset: uuid.UUID | None = None
    strength: float | None = None
    variation: Variation | None = None
    scale: UpscaleFactor | None = None
    mask: str | None = Field(None, description="Where the job's mask is stored (inpainting).")
    mask_blur: int = 2
    style: StyleUse | None = None
    extend: Extend | None = Field(None, description="The pixels added on each side (outpainting).")
    aspect: str | None = Field(None, description="The aspect ratio asked for, if any (outpainting).")
    regions: list[RegionUse] = Field([], description="Regional prompts (text to image, img2img, inpainting).")
    references: list[ReferenceUse] = Field(
        [], description="The reference images it was steered by (reference attention, IP-Adapter)."
    )
    controlnets: list[ControlNetUse] = []

    def planned_steps(self) -> int:
        """The denoising steps the job runs and reports: all of them from noise, the last ``strength`` share
        of them from a start image, and at least one."""
        if self.mode == "txt2img" or self.strength is None:
            return self.steps
        return max(1, min(int(self.steps * self.strength), self.steps))

    def batch_key(self) -> tuple[Any, ...]:
        """What must be equal for jobs to share one pipeline call: the model, the mode and everything the
        call takes once for the whole batch (size, steps, scheduler, LoRA set, guidance and strength). The
        prompts, negative prompts, seeds, image counts, start images and masks may differ: they are per image.
        An outpainting's extent is in the key too: its canvas and mask are built per request, but jobs of the
        same size extended differently are kept apart so that one call grows every image the same way. So are
        the ControlNet units' settings (which ControlNets, in order, with their preprocessors, weights, start
        and end: the pipelines take them once per call); their control images are per image.

        Guidance and strength are in the key because diffusers' pipelines take one ``guidance_scale`` and
        one ``strength`` for the whole call (a per-image guidance would need the pipelines' own loop)."""
        return (
            self.model,
            self.mode,
            self.width,
            self.height,
            self.steps,
            self.scheduler,
            round(self.guidance_scale, 4),
            None if self.strength is None else round(self.strength, 4),
            self.variation,
            self.scale,
            self.mask_blur if self.mask or self.extend else None,
            self.extend.sides() if self.extend else None,
            tuple(sorted((lora.id, round(lora.weight, 4)) for lora in self.loras)),
            # Regions are applied to the whole call: only jobs with the same regions share one.
            tuple(region.key() for region in self.regions),
            # Reference images steer the whole call (one set of attention banks, one IP-Adapter scale):
            # only jobs with the very same references, in the same order, share a call.
            tuple(reference.key() for reference in self.references),
            # ControlNets: the same units and settings (each job's control images are its own).
            tuple(unit.settings() for unit in self.controlnets),
        )


# --- answers --


class LoraOut(BaseModel):
    id: str
    name: str
    family: str


class ControlNetOut(BaseModel):
    id: str
    name: str
    family: str


class ModelOut(BaseModel):
    id: str
    name: str
    family: str
    default_width: int
    default_height: int
    default_steps: int
    default_guidance: float
    default_scheduler: str
    min_size: int
    max_size: int
    schedulers: list[str]
    modes: list[Mode]
    features: list[Feature] = Field(
        description="The controls the model takes beyond its modes, with what is installed for it now."
    )
    loras: list[LoraOut]
    controlnets: list[ControlNetOut] = Field(description="The installed ControlNets that fit the model.")


class Progress(BaseModel):
    step: int
    total: int


JobStatusName = Literal["queued", "running", "succeeded", "failed", "canceled"]


class JobOut(BaseModel):
    id: uuid.UUID
    project: str
    status: JobStatusName
    model: str
    params: JobParams
    progress: Progress
    queue_position: int | None = Field(description="Place in the queue while queued (1 = next), else null.")
    created_by: str
    created_at: Moment
    started_at: Moment | None
    finished_at: Moment | None
    error: str | None
    notice: str | None = Field(
        None, description="What happened while it waited (queued again after a lost worker, …)."
    )
    assets: list[AssetOut] = Field(description="The job's images once it has succeeded.")


class JobPage(BaseModel):
    results: list[JobOut]
    next: str | None


class JobPageQuery(BaseModel):
    cursor: Annotated[str, Field(pattern=UUID_CURSOR)] | None = None


# --- the worker fleet (site admins) --


class WorkerJobOut(BaseModel):
    """A job of the pipeline call a worker is running now."""

    job: uuid.UUID
    user: str = Field(description="The job's author.")
    project: str = Field(description="The project's slug.")
    model: str
    images: int = Field(description="How many images the job makes.")


class WorkerOut(BaseModel):
    """What a live worker last published (``generation/fleet.py``)."""

    name: str = Field(description="The Celery worker's name, e.g. gpu0@host-a.")
    host: str
    pool: str = Field(description="The queue of its pool of workers.")
    device: str = Field(description="What it runs on: cuda:0 and the GPU's name, or cpu.")
    memory_total: int | None = Field(description="The device's memory in bytes (the host's on a CPU).")
    memory_free: int | None = Field(description="The device's free memory in bytes.")
    rss_bytes: int | None = Field(description="The worker process's resident memory in bytes.")
    installed: list[str] = Field(description="Ids of the models it can run.")
    loaded: list[str] = Field(description="Ids of the models it keeps loaded.")
    current: list[WorkerJobOut] = Field(description="The jobs it is running now (one call; empty when idle).")
    jobs_per_hour: int = Field(description="Jobs it finished in the last hour.")
    images_per_hour: int = Field(description="Images it made in the last hour.")
    last_heartbeat: float | None = Field(description="When it last published its state (Unix time, seconds).")


class WorkersOut(BaseModel):
    workers: list[WorkerOut] = Field(description="The live workers, by name.")


# --- project styles --

STYLE_NAME_MAX = 100
MAX_REFERENCES = 8
MAX_CONTROLNETS = MAX_CONTROLNET_UNITS
StyleField = Literal[
    "prompt_prefix", "prompt_suffix", "negative_prompt", "model", "loras", "references", "controlnets"
]
StyleText = Annotated[str, Text(MAX_PROMPT)]


class ControlNetDefault(BaseModel):
    """A ControlNet unit a style gives the jobs that name none (generation/styles.py): the ControlNet, the
    kind of control (its preprocessor), weight, start and end, and the control image, or none to use the
    job's start image. Styles written before ControlNet landed may lack the ControlNet (their units are not
    applied)."""

    model_config = ConfigDict(extra="forbid")
    control: str = Field(
        description="The preprocessor, the kind of control: canny, lineart, scribble or none."
    )
    id: str | None = Field(None, description="The installed ControlNet.")
    image: uuid.UUID | None = Field(None, description="An image of the project; null: the job's start image.")
    weight: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0


class ControlNetDefaultIn(BaseModel):
    """A style's ControlNet unit as a lead writes it."""

    model_config = ConfigDict(extra="forbid")
    control: Preprocessor = Field(description="The preprocessor, the kind of control.")
    id: Annotated[str, Field(max_length=200), Installed("controlnets")] = Field(
        description="An installed ControlNet."
    )
    image: Annotated[uuid.UUID, Messages(uuid_parsing=NO_SUCH_ASSET, uuid_type=NO_SUCH_ASSET)] | None = Field(
        None, description="An image of the project; null: the job's start image."
    )
    weight: Annotated[float, Real(*CONTROLNET_WEIGHT)] = 1.0
    guidance_start: Share = 0.0
    guidance_end: Share = 1.0


StyleLoras = LoraList
References = Annotated[
    list[Annotated[uuid.UUID, Messages(uuid_parsing=NO_SUCH_ASSET, uuid_type=NO_SUCH_ASSET)]],
    Field(
        max_length=MAX_REFERENCES,
        description="Images of the project: a job that chooses no references of its own uses these (kind "
        f"reference, weight 1; the first {MAX_JOB_REFERENCES}).",
    ),
    Messages(too_long=f"At most {MAX_REFERENCES} reference images."),
]
ControlNets = Annotated[
    list[ControlNetDefaultIn],
    Field(max_length=MAX_CONTROLNETS, description="The ControlNet units of jobs that name none."),
    Messages(too_long=f"At most {MAX_CONTROLNETS} ControlNet units."),
]
Locks = Annotated[
    list[StyleField],
    Field(max_length=len(StyleField.__args__), description="The fields a job may not change."),
]


class StyleIn(BaseModel):
    """A new style (leads and admins)."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Text(STYLE_NAME_MAX, required=True)]
    prompt_prefix: StyleText = ""
    prompt_suffix: StyleText = ""
    negative_prompt: StyleText = ""
    model: ModelId | None = Field(None, description="Null: the job's (or the site's default).")
    loras: StyleLoras = []
    references: References = []
    controlnet_defaults: ControlNets = []
    locks: Locks = []


class StylePatch(BaseModel):
    """A change to a style: the fields given replace the current version's in a new version."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Text(STYLE_NAME_MAX, required=True)] | None = None
    prompt_prefix: StyleText | None = None
    prompt_suffix: StyleText | None = None
    negative_prompt: StyleText | None = None
    model: ModelId | None = Field(None, description="null clears it (jobs then choose the model).")
    loras: StyleLoras | None = None
    references: References | None = None
    controlnet_defaults: ControlNets | None = None
    locks: Locks | None = None


class StyleCopyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project: Annotated[str, Field(max_length=100, pattern=r"^[-a-zA-Z0-9_]+$")] = Field(
        description="The slug of the project to copy the style to (you must lead both)."
    )
    name: Annotated[str, Text(STYLE_NAME_MAX, required=True)] | None = Field(
        None, description="Default: the style's own name."
    )


class StyleLoraOut(BaseModel):
    id: str
    weight: float


class StyleOut(BaseModel):
    id: int
    project: str
    name: str
    version: int = Field(description="The current version's number (1 for a new style).")
    prompt_prefix: str
    prompt_suffix: str
    negative_prompt: str
    model: str | None
    loras: list[StyleLoraOut]
    references: list[uuid.UUID]
    controlnet_defaults: list[ControlNetDefault]
    locks: list[StyleField]
    created_by: str | None
    created_at: Moment
    updated_by: str | None = Field(description="Who wrote the current version.")
    updated_at: Moment


# --- ControlNet annotators (site admins) --

AnnotatorId = Annotated[str, Field(max_length=60, pattern=r"^[a-z0-9][a-z0-9-]*$")]


class AnnotatorIn(BaseModel):
    """An annotator to install from a folder on the server (``generation.library.do_install_annotator``)."""

    model_config = ConfigDict(extra="forbid")
    path: Annotated[
        str,
        Text(4096, required=True),
        Messages(string_pattern_mismatch="Enter an absolute path on the server."),
    ] = Field(
        pattern="^/",
        description="An absolute path on the server: a transformers folder (config.json, safetensors).",
    )
    name: Annotated[str, Text(200)] = Field("", description="Its name; empty: the folder's name.")


class AnnotatorOut(BaseModel):
    id: str
    name: str
    kind: str = Field(
        description="The ControlNet preprocessor it draws for.",
        json_schema_extra={"enum": list(registry.ANNOTATOR_KINDS)},
    )
    model_type: str = Field(description="Its transformers model type (dpt, depth_anything, vitpose).")
    sha256: str
    size_bytes: int
    installed_at: str
    installed_by: str
