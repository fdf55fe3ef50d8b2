"""Live previews: a linear latent→RGB projection, cheap enough to run at every step."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def latent_projector(
    factors: list[list[float]] | None, bias: list[float] | None, channels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if factors is None or len(factors) != channels:
        # Unknown latent space: show the first three channels as grey-ish colour, better than nothing.
        eye = torch.zeros(channels, 3)
        for c in range(min(3, channels)):
            eye[c, c] = 0.5
        factors_t = eye
    else:
        factors_t = torch.tensor(factors, dtype=torch.float32)
    bias_t = torch.tensor(bias if bias is not None else [0.0, 0.0, 0.0], dtype=torch.float32)
    return factors_t, bias_t


def latents_to_rgb(latents: torch.Tensor, factors: torch.Tensor, bias: torch.Tensor) -> np.ndarray:
    """One latent image (C×h×w) → an h×w×3 uint8 array."""
    lat = latents.detach().to(device="cpu", dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", lat, factors) + bias
    rgb = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8)
    return rgb.numpy()


def fit_latent_rgb_factors(
    vae: Any,
    scaling_factor: float,
    samples: int = 16,
    size: int = 64,
    seed: int = 0,
    images: torch.Tensor | None = None,
) -> tuple[list[list[float]], list[float]]:
    """Least-squares fit of latent→RGB factors against the model's own VAE decoder.

    Images (by default smooth random ones; a trained model is better fitted on pictures like the ones it
    makes, passed as ``images``: N×3×H×W in [-1, 1]) are encoded to latents (in the pipeline's scaled
    latent space) and decoded back; the decoded image, pooled to latent resolution, is regressed on the
    latent channels plus a bias.
    """
    gen = torch.Generator().manual_seed(seed)
    vae = vae.to(torch.float32).eval()
    if images is None:
        coarse = torch.rand(samples, 3, 4, 4, generator=gen) * 2 - 1
        images = torch.nn.functional.interpolate(
            coarse, size=(size, size), mode="bilinear", align_corners=False
        )
    with torch.no_grad():
        latents = vae.encode(images).latent_dist.mean * scaling_factor
        decoded = vae.decode(latents / scaling_factor).sample.clamp(-1, 1)
    h, w = latents.shape[-2:]
    pooled = torch.nn.functional.adaptive_avg_pool2d(decoded, (h, w))
    x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    x = torch.cat([x, torch.ones(x.shape[0], 1)], dim=1)
    y = pooled.permute(0, 2, 3, 1).reshape(-1, 3)
    solution: torch.Tensor = torch.linalg.lstsq(x, y)[0]
    factors = solution[:-1].tolist()
    bias = solution[-1].tolist()
    return [[round(v, 5) for v in row] for row in factors], [round(v, 5) for v in bias]
