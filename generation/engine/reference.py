"""Reference images by attention injection ("reference only"): the picture's style and content steer a job
through the UNet's own self-attention, with no extra weights, for every UNet family (SD 1.x, SD 2.x, SDXL and
the demo model).

How one denoiser call goes while ``references_applied`` is active:

1. **write**: each reference image (VAE-encoded once, at the job's size) is noised to the call's timestep
   (``x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε``, the variance-preserving form every Stable Diffusion scheduler hands
   the UNet) and the UNet runs over it with the call's own text conditioning, one row per row of the real
   batch. Each self-attention layer (``attn1``) stores its input, the reference's hidden states there.
2. **read**: the real call runs. Each self-attention layer attends over its own tokens *and* the stored
   reference tokens. A reference's ``weight`` w is a bias of log w on the attention logits of its tokens:
   weight 1 counts a reference token like one of the image's own, 2 twice as much, and 0 drops the
   reference exactly (its tokens get no attention at all).
3. **fidelity** f (style fidelity, as A1111's reference_only has it) matters only with classifier-free
   guidance, whose batch is the unconditional rows then the conditional ones: the conditional rows always
   read the reference, and the unconditional rows' self-attention output is
   ``f · plain + (1 − f) · reference-read``. Guidance pushes the image along the difference between the two
   halves, so at f = 1 it pushes towards the reference (closest to it), at f = 0 both halves see the
   reference alike and the prompt has more say. With several references the unconditional rows use their
   weight-averaged fidelity. Without guidance (guidance scale ≤ 1) fidelity changes nothing.

Everything happens in attention processors wrapped around the UNet's own and in a forward pre-hook on the
UNet, so the stock diffusers pipelines (text to image, image to image, inpainting) run unchanged. The
context manager puts the UNet's processors back and removes the hook however the call ends, so a later job
without references runs exactly as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

# What each reference adds to an image's memory in a call, as a share of the image's own activations: its
# write pass keeps every self-attention layer's input for each row (about a sixth of the activations
# estimated for SDXL at 1024², less for SD 1.5), rounded up (``worker.batch_room`` reads it).
BANK_SHARE = 0.25

# The reference's noise comes from its own generator, seeded by its place in the job's list: a seed gives
# the same image whether the job runs alone or in a batch (the job seeds never feed it).
NOISE_SEED = 0x5EED


@dataclass(frozen=True)
class Reference:
    """One reference image of a job, with its weight (0..2) and style fidelity (0..1)."""

    image: Image.Image
    weight: float = 1.0
    fidelity: float = 0.5


@dataclass
class _Bank:
    """What the processors share during one call: the mode, and per self-attention layer the reference
    hidden states the write passes stored (one entry per reference, in order)."""

    mode: str = "off"  # "write", "read" or "off"
    stored: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    biases: list[float] = field(default_factory=list)
    fidelity: float = 0.0
    unconditional_rows: int = 0  # the first rows of the batch that are guidance's unconditional half


class ReferenceAttnProcessor:
    """Wraps a self-attention layer's processor: stores its input in write passes, and in read passes
    attends over the input plus the stored reference tokens (with their weights' biases)."""

    def __init__(self, inner: Any, name: str, bank: _Bank) -> None:
        self.inner = inner
        self.name = name
        self.bank = bank

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        bank = self.bank
        plain = encoder_hidden_states is None and attention_mask is None and hidden_states.ndim == 3
        if not plain or bank.mode == "off":
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        if bank.mode == "write":
            bank.stored.setdefault(self.name, []).append(hidden_states.detach())
            return self.inner(attn, hidden_states, None, None, temb, **kwargs)
        stored = bank.stored.get(self.name) or []
        if len(stored) != len(bank.biases) or any(s.shape[0] != hidden_states.shape[0] for s in stored):
            return self.inner(attn, hidden_states, None, None, temb, **kwargs)
        rows, own = hidden_states.shape[0], hidden_states.shape[1]
        context = torch.cat([hidden_states, *stored], dim=1)
        bias = torch.zeros(rows, 1, context.shape[1], dtype=hidden_states.dtype, device=hidden_states.device)
        start = own
        lowest = torch.finfo(hidden_states.dtype).min
        for tokens, value in zip(stored, bank.biases, strict=True):
            bias[:, :, start : start + tokens.shape[1]] = value if value > -math.inf else lowest
            start += tokens.shape[1]
        read = self.inner(attn, hidden_states, context, bias, temb, **kwargs)
        uncond = bank.unconditional_rows
        if uncond and bank.fidelity > 0:
            alone = self.inner(attn, hidden_states[:uncond], None, None, temb, **kwargs)
            f = bank.fidelity
            read = torch.cat([f * alone + (1 - f) * read[:uncond], read[uncond:]], dim=0)
        return read


def weight_bias(weight: float) -> float:
    """The attention-logit bias of a reference's tokens: log of its weight (−inf for 0: never attended)."""
    return math.log(weight) if weight > 0 else -math.inf


def encode_reference(pipe: Any, image: Image.Image, width: int, height: int) -> torch.Tensor:
    """The reference as clean latents of the job's size (the VAE's mean, scaled as the pipeline's latents
    are), in float32 on the CPU."""
    vae = pipe.vae
    pixels = np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS))
    tensor = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    with torch.no_grad():
        encoded = vae.encode(tensor.to(device=vae.device, dtype=vae.dtype)).latent_dist.mean
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return ((encoded.float() - shift) * vae.config.scaling_factor).cpu()


def alpha_bar(alphas_cumprod: torch.Tensor, timestep: float) -> float:
    """ᾱ at a (possibly fractional) timestep, interpolated linearly between the schedule's integer ones."""
    last = alphas_cumprod.shape[0] - 1
    t = min(max(float(timestep), 0.0), float(last))
    low, high = int(math.floor(t)), int(math.ceil(t))
    frac = t - low
    return float(alphas_cumprod[low] * (1 - frac) + alphas_cumprod[high] * frac)


def _timestep_value(timestep: Any) -> float:
    if isinstance(timestep, torch.Tensor):
        return float(timestep.flatten()[0].item())
    return float(timestep)


@contextmanager
def references_applied(
    pipe: Any,
    references: Sequence[Reference],
    *,
    width: int,
    height: int,
    guidance_scale: float,
    images: int | None = None,
) -> Iterator[None]:
    """Steer every call of ``pipe``'s UNet by ``references`` for the duration (see the module's
    docstring); the UNet's processors are put back and the hook removed on the way out, whatever happens.

    With guidance the first ``images`` rows of the UNet's batch are the unconditional half (the call's
    image count; by default half the batch). Hooks registered on the UNet before these (regional prompts)
    may widen the batch with rows of their own after the two halves: the reference is read in every row."""
    if not references:
        yield
        return
    unet = pipe.unet
    alphas = getattr(pipe.scheduler, "alphas_cumprod", None)
    if alphas is None:
        raise ValueError("Reference images need a scheduler with a variance-preserving noise schedule.")
    alphas = alphas.detach().float().cpu()
    latents = [encode_reference(pipe, r.image, width, height) for r in references]
    generators = [torch.Generator("cpu").manual_seed(NOISE_SEED + i) for i in range(len(references))]
    total = sum(r.weight for r in references)
    bank = _Bank(
        biases=[weight_bias(r.weight) for r in references],
        fidelity=sum(r.weight * r.fidelity for r in references) / total if total > 0 else 0.0,
    )
    guided = guidance_scale > 1 and getattr(unet.config, "time_cond_proj_dim", None) is None
    saved = dict(unet.attn_processors)
    wrapped = {
        name: ReferenceAttnProcessor(processor, name, bank) if name.endswith("attn1.processor") else processor
        for name, processor in saved.items()
    }

    def before(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        rest = {k: v for k, v in kwargs.items() if k not in ("sample", "timestep")}
        rest["return_dict"] = False
        ab = alpha_bar(alphas, _timestep_value(timestep))
        rows = sample.shape[0]
        bank.stored.clear()
        bank.mode = "write"
        try:
            for clean, generator in zip(latents, generators, strict=True):
                noise = torch.randn(clean.shape, generator=generator, dtype=torch.float32)
                noised = math.sqrt(ab) * clean + math.sqrt(1 - ab) * noise
                model_input = _unet_input(noised, clean, sample)
                module.forward(model_input.expand(rows, -1, -1, -1), timestep, *args[2:], **rest)
        finally:
            bank.mode = "read"
        if not guided:
            bank.unconditional_rows = 0
        elif images is not None:
            bank.unconditional_rows = images if rows >= 2 * images else 0
        else:
            bank.unconditional_rows = rows // 2 if rows % 2 == 0 else 0

    def after(module: Any, args: Any, kwargs: Any, output: Any) -> None:
        bank.mode = "off"
        bank.stored.clear()

    unet.set_attn_processor(wrapped)
    handles = [
        unet.register_forward_pre_hook(before, with_kwargs=True),
        unet.register_forward_hook(after, with_kwargs=True),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        bank.stored.clear()
        bank.mode = "off"
        unet.set_attn_processor(saved)


@contextmanager
def job_references(
    pipe: Any, info: Any, params: Any, images: Sequence[Image.Image], count: int | None = None
) -> Iterator[dict[str, Any]]:
    """A job's references (``JobParams.references`` and their images, in order) applied to the pipeline
    that runs its call of ``count`` images: the IP-Adapter ones through ``ip_adapter.ip_adapter_applied``,
    the others by attention (``references_applied``). Yields the call's extra arguments."""
    from .ip_adapter import ip_adapter_applied

    uses = list(zip(params.references, images, strict=True))
    attention = [
        Reference(image, use.weight, 0.5 if use.fidelity is None else use.fidelity)
        for use, image in uses
        if use.kind == "reference"
    ]
    adapters = [(use, image) for use, image in uses if use.kind == "ip_adapter"]
    with (
        ip_adapter_applied(pipe, info, adapters) as extra,
        references_applied(
            pipe,
            attention,
            width=params.width,
            height=params.height,
            guidance_scale=params.guidance_scale,
            images=count,
        ),
    ):
        yield extra


def _unet_input(noised: torch.Tensor, clean: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """The reference's noised latents as the UNet's input: as they are for a 4-channel UNet; an inpainting
    UNet (9 channels: latents, mask, masked image) also gets an empty mask (nothing to repaint) and the
    reference itself as the masked image."""
    noised = noised.to(device=sample.device, dtype=sample.dtype)
    extra = sample.shape[1] - noised.shape[1]
    if extra <= 0:
        return noised
    mask = torch.zeros(1, 1, *noised.shape[2:], device=sample.device, dtype=sample.dtype)
    parts = [noised, mask]
    if extra > 1:
        masked = clean.to(device=sample.device, dtype=sample.dtype)
        if masked.shape[1] != extra - 1:
            masked = torch.zeros(1, extra - 1, *noised.shape[2:], device=sample.device, dtype=sample.dtype)
        parts.append(masked)
    return torch.cat(parts, dim=1)
