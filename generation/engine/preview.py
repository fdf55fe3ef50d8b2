"""Live previews: a linear latent→RGB projection, cheap enough to run at every step, or, where one is
installed for the family, a tiny distilled decoder (TAESD-style ``AutoencoderTiny``) that shows the picture
at full size."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


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


class Previewer:
    """Turns one step's latents (a batch: N×C×h×w) into the first image's preview, an H×W×3 uint8 array.

    With a tiny decoder the preview is the decoded picture (the image's own size, on the model's device and
    dtype); without one it is the linear projection at latent size. Either way only the first image is
    previewed, and how often is the caller's choice (the job's hooks rate-limit previews).

    On a GPU the preview never waits for the GPU: it is drawn there and copied to pinned host memory
    asynchronously (the diffusion loop goes on queueing steps meanwhile), and what a call returns is the
    newest preview whose copy has finished, usually the one asked for at the previous call. Only the first
    preview of a job waits for its own copy (there is nothing older to show), and one whose two predecessors
    are still not out waits for the older: at most two previews are in flight."""

    IN_FLIGHT = 2

    def __init__(self, factors: torch.Tensor, bias: torch.Tensor, decoder: Any | None = None) -> None:
        self.factors, self.bias, self.decoder = factors, bias, decoder
        self._in_flight: list[tuple[torch.cuda.Event, torch.Tensor]] = []
        self._shown: np.ndarray | None = None
        self._factors_on: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def kind(self) -> str:
        return "decoder" if self.decoder is not None else "factors"

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        if latents.device.type == "cuda":
            return self._on_gpu(latents)
        if self.decoder is not None:
            try:
                return self.decode(latents[:1])
            except RuntimeError:  # (out of memory, a decoder that does not fit): the factors take over
                logger.exception("The preview decoder failed; this job's previews use latent factors")
                self.decoder = None
        return latents_to_rgb(latents[0], self.factors, self.bias)

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Latents in the pipeline's (scaled) latent space through the tiny decoder, unscaled the way the
        pipelines unscale them for their own VAE (the decoder's config carries the factors it expects)."""
        return self._decoded(latents).cpu().numpy()

    def _decoded(self, latents: torch.Tensor) -> torch.Tensor:
        """The first image of ``latents`` through the tiny decoder: H×W×3 uint8, on the decoder's device."""
        decoder: Any = self.decoder
        config = decoder.config
        lat = latents.to(device=decoder.device, dtype=decoder.dtype)
        lat = lat / config.scaling_factor + (getattr(config, "shift_factor", None) or 0.0)
        with torch.inference_mode():
            image = decoder.decode(lat).sample[0]
            rgb = ((image.float() + 1.0) * 127.5).clamp(0, 255).to(torch.uint8)
        return rgb.permute(1, 2, 0)

    def _projected(self, latents: torch.Tensor) -> torch.Tensor:
        """The first image of ``latents`` through the latent→RGB factors: h×w×3 uint8, on its device."""
        lat = latents[0].float()
        if self._factors_on is None or self._factors_on[0].device != lat.device:
            self._factors_on = (self.factors.to(lat.device), self.bias.to(lat.device))  # (once a job)
        factors, bias = self._factors_on
        with torch.inference_mode():
            rgb = torch.einsum("chw,cr->hwr", lat, factors) + bias
            return ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8)

    def _on_gpu(self, latents: torch.Tensor) -> np.ndarray:
        image: torch.Tensor | None = None
        if self.decoder is not None:
            try:
                image = self._decoded(latents[:1])
            except RuntimeError:
                logger.exception("The preview decoder failed; this job's previews use latent factors")
                self.decoder = None
        if image is None:
            image = self._projected(latents)
        host = torch.empty(image.shape, dtype=torch.uint8, pin_memory=True)
        host.copy_(image, non_blocking=True)
        copied = torch.cuda.Event()
        copied.record()
        self._in_flight.append((copied, host))
        ready: torch.Tensor | None = None
        while self._in_flight and (
            self._in_flight[0][0].query() or len(self._in_flight) > self.IN_FLIGHT or self._shown is None
        ):
            event, ready = self._in_flight.pop(0)
            event.synchronize()  # (at once when query() said so)
            if self._shown is None:
                break
        if ready is not None:
            self._shown = ready.numpy()  # (the array keeps the pinned buffer alive until it is sent)
        assert self._shown is not None
        return self._shown


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
