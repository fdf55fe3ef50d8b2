"""What each model family supports, in plain Python (web processes read this without torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

# What any job may ask for, whatever the model (a model's metadata can narrow these, never widen them).
MAX_STEPS = 150
MAX_GUIDANCE = 30.0

# Friendly scheduler names, as artists know them from other tools. Denoising (DDPM-trained) families can use
# any of these; flow-matching families (SD3, FLUX) only the flow-match ones.
ALL_SCHEDULERS = [
    "Euler",
    "Euler a",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DDIM",
    "UniPC",
    "Heun",
    "LMS",
    "PNDM",
]
FLOW_SCHEDULERS = ["Euler", "Heun"]


# Generation modes (shared/API.md). Every mode but txt2img starts from an image and runs the family's
# image-to-image or inpainting pipeline (outpainting: inpainting on a larger canvas), built from its
# text-to-image one with the same weights.
ALL_MODES = ["txt2img", "img2img", "inpaint", "outpaint", "variation", "upscale"]


# The SD 1.x/2.x VAE's latent space (both families share the VAE).
SD_LATENT_RGB_FACTORS = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
]


# The precisions a model may run in on a GPU (the CPU always runs fp32).
DTYPES = ("fp16", "bf16", "fp32")


@dataclass(frozen=True)
class FastPath:
    """How a family's models run on a CUDA GPU (deploy/README.md, "GPU fast path"); a model's studio.json may
    override each of these under the same key. The denoiser always uses PyTorch's fused attention (SDPA)."""

    # The weights' and activations' precision.
    dtype: str = "fp16"
    # Keep the VAE in fp32 (fp16 activations overflow in the SDXL and SD3 VAEs: black or speckled images).
    vae_upcast: bool = False
    # Convolutions (the UNet's, the VAE's) in channels-last memory format, which tensor cores run fastest.
    channels_last: bool = True


@dataclass(frozen=True)
class Family:
    key: str
    label: str
    default_size: int
    min_size: int
    max_size: int
    default_steps: int
    default_guidance: float
    default_scheduler: str
    schedulers: list[str] = field(default_factory=lambda: list(ALL_SCHEDULERS))
    modes: list[str] = field(default_factory=lambda: list(ALL_MODES))
    # Published linear latent→RGB factors (rows: latent channels; columns: R, G, B) for previews.
    latent_rgb_factors: list[list[float]] | None = None
    latent_rgb_bias: list[float] | None = None
    # Trained as a flow (rectified flow): it samples with flow-match schedulers only.
    flow_matching: bool = False
    # Whether its single-file checkpoints load, with the component configs shipped under
    # generation/engine/configs/<key>/ (SINGLE_FILE_REFUSALS says why not, where not).
    single_file: bool = False
    # Image sides must be multiples of this: the VAE's 8, times the 2×2 latent patches of SD3's and FLUX's
    # transformers.
    size_multiple: int = 8
    fast_path: FastPath = field(default_factory=FastPath)
    # Whether its models take ControlNets (diffusers' ControlNet pipelines for its architecture).
    controlnet: bool = False


# Published latent→RGB factors of the 16-channel VAEs of SD3 and FLUX (as used by common previewers).
SD3_LATENT_RGB_FACTORS = [
    [-0.0922, -0.0175, 0.0749],
    [0.0311, 0.0633, 0.0954],
    [0.1994, 0.0927, 0.0458],
    [0.0856, 0.0339, 0.0902],
    [0.0587, 0.0272, -0.0496],
    [-0.0006, 0.1104, 0.0309],
    [0.0978, 0.0306, 0.0427],
    [-0.0042, 0.1038, 0.1358],
    [-0.0194, 0.0020, 0.0669],
    [-0.0488, 0.0130, -0.0268],
    [0.0922, 0.0988, 0.0951],
    [-0.0278, 0.0524, -0.0542],
    [0.0332, 0.0456, 0.0895],
    [-0.0069, -0.0030, -0.0810],
    [-0.0596, -0.0465, -0.0293],
    [-0.1448, -0.1463, -0.1189],
]
SD3_LATENT_RGB_BIAS = [0.2394, 0.2135, 0.1925]
FLUX_LATENT_RGB_FACTORS = [
    [-0.0346, 0.0244, 0.0681],
    [0.0034, 0.0210, 0.0687],
    [0.0275, -0.0668, -0.0433],
    [-0.0174, 0.0160, 0.0617],
    [0.0859, 0.0721, 0.0329],
    [0.0004, 0.0383, 0.0115],
    [0.0405, 0.0861, 0.0915],
    [-0.0236, -0.0185, -0.0259],
    [-0.0245, 0.0250, 0.1180],
    [0.1008, 0.0755, -0.0421],
    [-0.0515, 0.0201, 0.0011],
    [0.0428, -0.0012, -0.0036],
    [0.0817, 0.0765, 0.0749],
    [-0.1264, -0.0522, -0.1103],
    [-0.0280, -0.0881, -0.0499],
    [-0.1262, -0.0982, -0.0778],
]
FLUX_LATENT_RGB_BIAS = [-0.0329, -0.0718, -0.0851]


FAMILIES: dict[str, Family] = {
    "demo": Family("demo", "Demo", 64, 32, 256, 20, 5.0, "Euler", controlnet=True),
    "sd1": Family(
        "sd1",
        "Stable Diffusion 1.x",
        512,
        256,
        1024,
        30,
        7.5,
        "DPM++ 2M Karras",
        latent_rgb_factors=SD_LATENT_RGB_FACTORS,
        single_file=True,
        controlnet=True,
    ),
    "sd2": Family(
        "sd2",
        "Stable Diffusion 2.x",
        768,
        256,
        1024,
        30,
        7.5,
        "DPM++ 2M Karras",
        latent_rgb_factors=SD_LATENT_RGB_FACTORS,
        single_file=True,
        controlnet=True,
    ),
    "sdxl": Family(
        "sdxl",
        "Stable Diffusion XL",
        1024,
        512,
        2048,
        30,
        6.0,
        "DPM++ 2M Karras",
        latent_rgb_factors=[
            [0.3651, 0.4232, 0.4341],
            [-0.2533, -0.0042, 0.1068],
            [0.1076, 0.1111, -0.0362],
            [-0.3165, -0.2492, -0.2188],
        ],
        latent_rgb_bias=[0.1084, -0.0175, -0.0011],
        single_file=True,
        fast_path=FastPath("fp16", vae_upcast=True),
        controlnet=True,
    ),
    "sd3": Family(
        "sd3",
        "Stable Diffusion 3",
        1024,
        512,
        2048,
        28,
        7.0,
        "Euler",
        schedulers=list(FLOW_SCHEDULERS),
        latent_rgb_factors=SD3_LATENT_RGB_FACTORS,
        latent_rgb_bias=SD3_LATENT_RGB_BIAS,
        flow_matching=True,
        single_file=True,
        size_multiple=16,
        fast_path=FastPath("fp16", vae_upcast=True),
    ),
    "flux": Family(
        "flux",
        "FLUX.1",
        1024,
        512,
        2048,
        28,
        3.5,
        "Euler",
        schedulers=["Euler"],
        latent_rgb_factors=FLUX_LATENT_RGB_FACTORS,
        latent_rgb_bias=FLUX_LATENT_RGB_BIAS,
        flow_matching=True,
        size_multiple=16,
        # fp16 overflows in FLUX's transformer and T5 encoder (black or NaN images); bf16 has fp32's range.
        fast_path=FastPath("bf16"),
        controlnet=True,
    ),
}

# Which diffusers pipeline class a family's model_index.json names.
PIPELINE_CLASS_FAMILIES = {
    "StableDiffusionPipeline": "sd1",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3",
    "FluxPipeline": "flux",
}

# The ControlNet classes (a ControlNet folder's config.json ``_class_name``) and the families each serves.
CONTROLNET_CLASSES = {"ControlNetModel": ("demo", "sd1", "sd2", "sdxl"), "FluxControlNetModel": ("flux",)}

# Why a family's single-file checkpoints cannot be installed (use its diffusers folder instead).
SINGLE_FILE_REFUSALS = {
    "flux": (
        "FLUX single-file checkpoints need the T5 text encoder and its tokenizer, which this studio cannot "
        "obtain offline; install the model's diffusers folder (it carries its own text encoders and "
        "tokenizers)."
    ),
    "demo": "The demo family has no single-file format; install its diffusers folder.",
}
