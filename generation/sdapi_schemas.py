"""The declared types of the AUTOMATIC1111-compatible API (``/sdapi/v1/``).

The request bodies declare every field AUTOMATIC1111's own API takes (so the tools that speak it send nothing
unknown), with the studio's limits. ``generation.a1111`` says which of them the studio serves and how; a field
it does not serve is refused with a sentence when it asks for something other than the default.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, model_validator

from studio.fields import Bool, Messages, Real, Text, Whole

from .engine import registry
from .engine.families import MAX_GUIDANCE, MAX_STEPS
from .schemas import MAX_IMAGES, MAX_PROMPT, MAX_SEED, Installed, Side


class InstalledCheckpoints:
    """JSON-schema metadata: one of the installed models, by id or by AUTOMATIC1111 title."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = dict(handler(core_schema))
        names: list[str] = []
        for model in registry.list_models():
            digest = model.sha256[:10] if model.sha256 else None
            names += [model.id, f"{model.id} [{digest}]"] if digest else [model.id]
        if names:
            schema["enum"] = names
        return schema


# Images as AUTOMATIC1111 sends them: base64, bare or as a data URL.
IMAGE_MAX_CHARS = 40 * 1024 * 1024
Base64Image = Annotated[
    str,
    Field(
        max_length=IMAGE_MAX_CHARS,
        description="A PNG, JPEG or WebP image in base64 (bare, or as a data: URL).",
    ),
]
Name = Annotated[str, Field(max_length=200)]
Sampler = Annotated[str, Field(max_length=200), Installed("schedulers")]
# AUTOMATIC1111's schedule types: the studio's samplers carry theirs in their names ("DPM++ 2M Karras").
ScheduleType = Annotated[
    Literal["automatic", "Automatic"],
    Messages(
        literal_error='Only "automatic": pick a sampler named with its schedule, such as "DPM++ 2M Karras".'
    ),
]


class Unserved(Messages, annotated_types.GroupedMetadata):
    """``Annotated[str, Unserved(sentence)] | None``: a text field the studio does not serve. Only empty
    (or null) is taken; anything else is refused with ``sentence``."""

    def __init__(self, sentence: str) -> None:
        super().__init__(string_too_long=sentence)

    def __iter__(self) -> Iterator[Any]:
        yield annotated_types.MaxLen(0)


def off(sentence: str) -> Messages:
    """For ``Annotated[Literal[False], off(sentence)] | None``: a switch the studio does not serve."""
    return Messages(literal_error=sentence)


Seed = Annotated[int, Whole(-1, MAX_SEED), Field(description="-1 = random.")]


LEGACY_HIRES = "The old first-phase size is not served: give width and height, and hr_scale."
HR_RESIZE = "Resizing to a size is not served: give hr_scale (2 or 4)."


class OverrideSettings(BaseModel):
    """Settings for one call. The checkpoint is served; any other setting is ignored, and the answer's
    info says so."""

    model_config = ConfigDict(extra="allow")
    sd_model_checkpoint: Annotated[str, Field(max_length=200), InstalledCheckpoints()] | None = None


class InstalledControlNets:
    """JSON-schema metadata: one of the installed ControlNets, by id, name or ``name [hash]`` (or "None": no
    ControlNet, the unit does nothing)."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = dict(handler(core_schema))
        names = ["None"]
        for controlnet in registry.list_controlnets():
            names += [controlnet.id, controlnet.name, f"{controlnet.name} [{controlnet.sha256[:8]}]"]
        schema["enum"] = sorted(set(names))
        return schema


# sd-webui-controlnet's preprocessor ("module") names the studio runs: its own, and "invert", which turns a
# sketch's dark lines on white into white lines on black as the studio's lineart does (which also thresholds).
ControlNetModule = Annotated[
    Literal["none", "None", "canny", "lineart", "scribble", "invert"],
    Messages(
        literal_error="Choose one of: none, canny, lineart, scribble, invert (annotators such as depth or "
        "lineart_standard are not served: send a map made elsewhere with module none)."
    ),
]
UNIT_RESIZE = "Only Crop and Resize is served (the control map is cropped to the image's aspect, centred)."
UNIT_CONTROL_MODE = "Only Balanced (0) is served."


class ControlNetImageIn(BaseModel):
    """A unit's image as the extension's newer clients send it: the image, and an optional mask (refused)."""

    model_config = ConfigDict(extra="forbid")
    image: Base64Image
    mask: Annotated[str, Unserved("A ControlNet unit's mask is not served by this studio.")] | None = None


class ControlNetUnitIn(BaseModel):
    """One unit of sd-webui-controlnet's API (``alwayson_scripts.controlnet.args``). It becomes one of the
    job's ``controlnets``: its image an upload of the project, ``module`` the preprocessor, ``model`` an
    installed ControlNet."""

    model_config = ConfigDict(extra="forbid")
    enabled: Bool = True
    module: ControlNetModule = "none"
    model: Annotated[str, Field(max_length=300), InstalledControlNets()] = Field(
        "None", description="An installed ControlNet: its id, name, or name [hash]."
    )
    weight: Annotated[float, Real(0, 2)] = 1.0
    image: Base64Image | ControlNetImageIn | None = Field(
        None, description="The control image in base64 (default: img2img's start image)."
    )
    input_image: Base64Image | None = Field(None, description="The old name of image.")
    mask: Annotated[str, Unserved("A ControlNet unit's mask is not served by this studio.")] | None = None
    resize_mode: (
        Annotated[
            Literal[1, "Crop and Resize", "Inner Fit (Scale to Fit)"], Messages(literal_error=UNIT_RESIZE)
        ]
        | None
    ) = Field(None, description="Crop and Resize only.")
    low_vram: Bool = Field(False, description="Not used: the worker manages its memory.")
    processor_res: Annotated[int, Whole(-1, 8192)] = Field(
        -1, description="Not used: the map is made at the image's size (pixel perfect)."
    )
    threshold_a: Annotated[float, Real(-1, 1024)] = Field(-1, description="Canny: 100 (or -1) only.")
    threshold_b: Annotated[float, Real(-1, 1024)] = Field(-1, description="Canny: 200 (or -1) only.")
    guidance_start: Annotated[float, Real(0, 1)] = 0.0
    guidance_end: Annotated[float, Real(0, 1)] = 1.0
    control_mode: Annotated[Literal[0, "Balanced"], Messages(literal_error=UNIT_CONTROL_MODE)] | None = Field(
        None, description="Balanced only."
    )
    pixel_perfect: Bool = Field(False, description="The map is always made at the image's size.")
    guessmode: Annotated[Literal[False], off("Guess mode is not served by this studio.")] | None = None


class ControlNetScript(BaseModel):
    model_config = ConfigDict(extra="forbid")
    args: Annotated[list[ControlNetUnitIn], Field(max_length=4)] = Field(
        [], description="The units (at most 4 enabled ones)."
    )


class AlwaysOnScripts(BaseModel):
    """``alwayson_scripts``: ControlNet is served; any other script is ignored, and the answer's info says
    so."""

    model_config = ConfigDict(extra="allow")
    controlnet: ControlNetScript | None = Field(
        None, description="sd-webui-controlnet's units, run as the job's ControlNets."
    )

    @model_validator(mode="before")
    @classmethod
    def _titles_any_case(cls, value: Any) -> Any:
        # AUTOMATIC1111 matches scripts by title whatever the case: the extension's is "ControlNet".
        if isinstance(value, dict):
            return {("controlnet" if str(k).lower() == "controlnet" else k): v for k, v in value.items()}
        return value


class Common(BaseModel):
    """The fields txt2img and img2img share (AUTOMATIC1111's StableDiffusionProcessing)."""

    model_config = ConfigDict(extra="forbid")

    prompt: Annotated[str, Text(MAX_PROMPT, required=True)] = Field(
        description="Required: the studio makes no image from an empty prompt."
    )
    negative_prompt: Annotated[str, Text(MAX_PROMPT)] = ""
    styles: (
        Annotated[
            list[Name],
            Field(max_length=0),
            Messages(too_long="Prompt styles are not served by this studio; put the words in the prompt."),
        ]
        | None
    ) = Field(None, description="Not served: empty only.")
    seed: Seed = -1
    subseed: Seed = -1
    subseed_strength: Annotated[
        float,
        Real(0, 0),
        Messages(less_than_equal="Variation seeds are not served; use a variation job instead."),
    ] = Field(0, description="Variation seeds are not served: 0 only.")
    seed_resize_from_h: Annotated[int, Whole(-1, 8192)] = -1
    seed_resize_from_w: Annotated[int, Whole(-1, 8192)] = -1
    seed_enable_extras: Bool = True
    sampler_name: Sampler | None = Field(None, description="One of GET samplers (the model's schedulers).")
    sampler_index: Sampler | None = Field(None, description="The old name of sampler_name.")
    scheduler: ScheduleType | None = Field(
        None, description="automatic, or a schedule type of GET schedulers."
    )
    batch_size: Annotated[int, Whole(1, MAX_IMAGES)] = 1
    n_iter: Annotated[int, Whole(1, MAX_IMAGES)] = Field(
        1, description="Batches, run one after the other (one job each)."
    )
    steps: Annotated[int, Whole(1, MAX_STEPS)] = 50
    cfg_scale: Annotated[float, Real(0, MAX_GUIDANCE)] = 7.0
    width: Side | None = Field(None, description="Default: the model's.")
    height: Side | None = Field(None, description="Default: the model's.")
    restore_faces: Annotated[Literal[False], off("Face restoration is not served by this studio.")] | None = (
        None
    )
    tiling: Annotated[Literal[False], off("Tiling is not served by this studio.")] | None = None
    do_not_save_samples: Bool = Field(False, description="The studio keeps every image in the gallery.")
    do_not_save_grid: Bool = Field(False, description="The studio makes no grids.")
    eta: Annotated[float, Real(0, 1)] | None = None
    denoising_strength: Annotated[float, Real(0, 1)] | None = None
    s_min_uncond: Annotated[float, Real(0, 100)] | None = None
    s_churn: Annotated[float, Real(0, 100)] | None = None
    s_tmax: Annotated[float, Real(0, 1000)] | None = None
    s_tmin: Annotated[float, Real(0, 1000)] | None = None
    s_noise: Annotated[float, Real(0, 10)] | None = None
    override_settings: OverrideSettings | None = Field(
        None, description="sd_model_checkpoint is served (for this call); other settings are ignored."
    )
    override_settings_restore_afterwards: Bool = True
    refiner_checkpoint: Annotated[str, Unserved("Refiners are not served by this studio.")] | None = None
    refiner_switch_at: Annotated[float, Real(0, 1)] | None = Field(None, description="Not used.")
    disable_extra_networks: Bool = Field(False, description="true: <lora:…> in the prompt is left as text.")
    firstpass_image: Annotated[str, Unserved("A first-pass image is not served by this studio.")] | None = (
        None
    )
    comments: dict[str, Any] | None = None
    force_task_id: Annotated[str, Field(max_length=200)] | None = None
    script_name: Annotated[str, Unserved("Scripts are not served by this studio.")] | None = None
    script_args: Annotated[list[Any], Field(max_length=100)] = []
    send_images: Bool = True
    save_images: Bool = Field(False, description="The studio keeps every image in the gallery.")
    alwayson_scripts: AlwaysOnScripts = Field(
        default_factory=lambda: AlwaysOnScripts(controlnet=None),
        description="controlnet is served (sd-webui-controlnet's units); any other is ignored, and the "
        "answer's info says so.",
    )
    infotext: (
        Annotated[str, Unserved("Reading parameters from infotext is not served; send them as fields.")]
        | None
    ) = None


class Txt2ImgIn(Common):
    enable_hr: Bool = Field(False, description="Hires. fix: each image is then upscaled by hr_scale.")
    firstphase_width: Annotated[Literal[0], Messages(literal_error=LEGACY_HIRES)] = 0
    firstphase_height: Annotated[Literal[0], Messages(literal_error=LEGACY_HIRES)] = 0
    hr_scale: Annotated[
        Literal[2, 4], Messages(literal_error="Choose one of: 2, 4 (the studio upscales by 2 or 4).")
    ] = Field(2, description="2 or 4 (the studio's upscale mode).")
    hr_upscaler: Name | None = Field(None, description="The upscale repaints with the same model.")
    hr_second_pass_steps: Annotated[int, Whole(0, MAX_STEPS)] = Field(0, description="0 = the same steps.")
    hr_resize_x: Annotated[Literal[0], Messages(literal_error=HR_RESIZE)] = 0
    hr_resize_y: Annotated[Literal[0], Messages(literal_error=HR_RESIZE)] = 0
    hr_checkpoint_name: (
        Annotated[str, Unserved("The upscale uses the same checkpoint; another is not served.")] | None
    ) = None
    hr_sampler_name: Sampler | None = Field(None, description="Default: the first pass's sampler.")
    hr_scheduler: ScheduleType | None = None
    hr_prompt: Annotated[str, Text(MAX_PROMPT)] = ""
    hr_negative_prompt: Annotated[str, Text(MAX_PROMPT)] = ""


class Img2ImgIn(Common):
    init_images: Annotated[list[Base64Image], Field(min_length=1, max_length=1)] = Field(
        description="One start image (it is kept in the project's gallery as an upload)."
    )
    resize_mode: Annotated[Literal[0], Messages(literal_error="Only 0 (resize) is served.")] = Field(
        0, description="0 (resize) only."
    )
    image_cfg_scale: Annotated[float, Real(0, 30)] | None = None
    mask: Base64Image | None = Field(None, description="Inpainting: white = repaint.")
    mask_blur_x: Annotated[int, Whole(0, 64)] = 4
    mask_blur_y: Annotated[int, Whole(0, 64)] = 4
    mask_blur: Annotated[int, Whole(0, 64)] | None = Field(
        None, description="The soft edge of the repainted area, in pixels."
    )
    mask_round: Bool = True
    inpainting_fill: Annotated[int, Whole(0, 3)] = 1
    inpaint_full_res: Bool | Annotated[int, Whole(0, 1)] = True
    inpaint_full_res_padding: Annotated[int, Whole(0, 256)] = 0
    inpainting_mask_invert: Annotated[int, Whole(0, 1)] = Field(0, description="1: black = repaint.")
    initial_noise_multiplier: Annotated[float, Real(0, 2)] | None = None
    latent_mask: Annotated[str, Unserved("A separate latent mask is not served; send the mask.")] | None = (
        None
    )
    include_init_images: Bool = False
    denoising_strength: Annotated[float, Real(0, 1)] = 0.75


class ImagesOut(BaseModel):
    images: list[str] = Field(description="The images as base64 PNGs, each carrying its provenance.")
    parameters: dict[str, Any]
    info: str = Field(description="A JSON string: what was made, as AUTOMATIC1111 reports it, and more.")


class ProgressQuery(BaseModel):
    skip_current_image: bool = False


class ProgressOut(BaseModel):
    progress: float
    eta_relative: float
    state: dict[str, Any]
    current_image: str | None
    textinfo: str | None


class InterruptOut(BaseModel):
    interrupted: int = Field(description="How many of the caller's jobs were stopped.")


class SdModelOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    title: str
    model_name: str
    hash: str | None
    sha256: str | None
    filename: str
    config: str | None


class SamplerOut(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, Any]


class SchedulerOut(BaseModel):
    name: str
    label: str
    aliases: list[str] | None
    default_rho: float | None
    need_inner_model: bool | None


class UpscalerOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    name: str
    model_name: str | None
    model_path: str | None
    model_url: str | None
    scale: float | None


class LoraOut(BaseModel):
    name: str
    alias: str
    path: str
    metadata: dict[str, Any]


class MemoryOut(BaseModel):
    ram: dict[str, Any]
    cuda: dict[str, Any]


class OptionsOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    sd_model_checkpoint: str | None
    sd_checkpoint_hash: str | None


class OptionsIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    sd_model_checkpoint: Annotated[str, Field(max_length=200), InstalledCheckpoints()] | None = Field(
        None, description="A title or id from GET sd-models."
    )


class OptionsSetOut(BaseModel):
    ignored: list[str] = Field(description="Options the studio does not keep.")


class PngInfoIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: Base64Image


class PngInfoOut(BaseModel):
    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]


class ScriptsOut(BaseModel):
    txt2img: list[str]
    img2img: list[str]
