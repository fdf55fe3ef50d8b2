"""What each model family supports, in plain Python (web processes read this without torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

# Friendly scheduler names, as artists know them from other tools.
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


# The SD 1.x/2.x VAE's latent space (both families share the VAE).
SD_LATENT_RGB_FACTORS = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
]


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
    modes: list[str] = field(default_factory=lambda: ["txt2img"])
    # Published linear latent→RGB factors (rows: latent channels; columns: R, G, B) for previews.
    latent_rgb_factors: list[list[float]] | None = None
    latent_rgb_bias: list[float] | None = None


FAMILIES: dict[str, Family] = {
    "demo": Family("demo", "Demo", 64, 32, 256, 20, 5.0, "Euler"),
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
    ),
}

# Which diffusers pipeline class a family's model_index.json names.
PIPELINE_CLASS_FAMILIES = {
    "StableDiffusionPipeline": "sd1",
    "StableDiffusionXLPipeline": "sdxl",
}
