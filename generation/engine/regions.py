"""Regional prompts for the UNet families (SD 1.x, SD 2.x, SDXL and the demo model): each region's prompt
paints its part of the picture, the job's prompt the whole of it.

The method is latent couple: at every step the UNet predicts the noise once for the job's prompt and once
for each region's prompt, all on the same latents, and the predictions are blended pixel by pixel with the
regions' masks (at the latents' resolution). Where no region is, the job's prompt alone counts; inside a
region its prompt takes ``weight / (weight + BASE_SHARE)`` of the prediction and the job's prompt the rest,
so the whole picture stays one scene. Overlapping regions share by weight.

Why latent couple rather than masking cross-attention per region:

* Quality: each prediction is an ordinary, unmodified UNet pass, so every prompt is understood exactly as
  it would be alone, whatever the model's attention layout (SD 1.x's, SD 2.x's and SDXL's differ, and
  attention processors installed by other features are left alone). Attention masking changes what each
  query attends to inside every layer and the 8×8 and 16×16 layers cannot follow a region's edge; small
  models especially draw regions weakly with it.
* Cost per step: one UNet pass per region prompt on top of the usual two (negative and job prompt), which
  is more than attention masking's single pass. They run as one batched call, so on a GPU the cost grows by
  less than the pass count (and the activation memory by ``(2 + regions) / 2``).
* Classifier-free guidance: the blended prediction replaces the job prompt's one, so the pipeline's own
  guidance step applies to it unchanged. Because the blend's weights sum to 1 everywhere, that is exactly
  each prompt's own guided prediction blended by the masks. The negative prompt is the job's, for every
  region. Without guidance (a scale of 1 or less) the same blend applies to the single prediction.
* SDXL's pooled text embedding and size conditioning: each region pass takes its own prompt's pooled
  embedding and the job's size conditioning.
* Batching and several images per call: the job prompt's part of the batch holds one row per image (their
  prompts may differ); each region's prompt is added once per image, on that image's latents.

Nothing in the pipelines changes: a forward pre-hook on the UNet widens its batch with the region rows and
a forward hook folds their predictions back into the batch the pipeline expects. Both hooks are removed when
the call ends, however it ends (``applied``), so the next job runs the model exactly as loaded. The
pipeline's latents stay one batch of the images' own: previews show the whole picture forming.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from PIL import Image

from .errors import GenerationError
from .registry import REGION_FAMILIES

# The job prompt's share of the prediction inside a region of weight 1 is BASE_SHARE / (1 + BASE_SHARE).
BASE_SHARE = 0.1


def region_maps(
    params: Any, masks: tuple[Image.Image | None, ...], height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """The blend's weights at a latent resolution of ``height`` × ``width``: the job prompt's (``height ×
    width``) and each region's (``regions × height × width``), summing to 1 at every latent pixel. A box or
    mask is averaged over each latent pixel's area, so edges that cut a latent pixel blend softly."""
    size = (params.width, params.height)
    shares = []
    for region, mask in zip(params.regions, masks, strict=True):
        if mask is None:
            pixels = Image.new("F", size, 0.0)
            x0, y0, x1, y1 = region.box
            pixels.paste(1.0, (x0, y0, x1, y1))
        else:
            pixels = mask.convert("L").resize(size, Image.Resampling.NEAREST).point(lambda v: v / 255.0, "F")
        small = pixels.resize((width, height), Image.Resampling.BOX)
        shares.append(np.clip(np.asarray(small, dtype=np.float32), 0.0, 1.0))
    stacked = np.stack(shares)
    coverage = np.clip(stacked.sum(axis=0), 0.0, 1.0)
    base = 1.0 - (1.0 - BASE_SHARE) * coverage
    weights = np.array([region.weight for region in params.regions], dtype=np.float32)
    regional = stacked * weights[:, None, None]
    total = base + regional.sum(axis=0)
    return base / total, regional / total[None]


class RegionalPrompts:
    """The hooks' state for one pipeline call: the regions' text embeddings and, once the latents' size is
    known, their blend weights."""

    def __init__(self, params: Any, masks: tuple[Image.Image | None, ...], images: int, embeds: Any) -> None:
        self.params = params
        self.masks = masks
        self.images = images  # the images of the call (N): the batch is N, or 2N with guidance
        self.embeds, self.pooled = embeds
        self.count = len(params.regions)
        self._weights: dict[tuple[int, int, Any, Any], tuple[torch.Tensor, torch.Tensor]] = {}
        self._batch = 0

    def weights(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = like.shape[-2:]
        key = (height, width, like.device, like.dtype)
        if key not in self._weights:
            base, regional = region_maps(self.params, self.masks, height, width)
            self._weights[key] = (
                torch.from_numpy(base).to(like.device, like.dtype)[None, None],
                torch.from_numpy(regional).to(like.device, like.dtype)[:, None, None],
            )
        return self._weights[key]

    def _widen(self, value: Any) -> Any:
        """A batch-shaped input with each region's rows added: the job prompt's rows (the last N) repeated
        once per region."""
        batch, n = self._batch, self.images
        if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == batch:
            cond = value[batch - n :]
            return torch.cat([value, cond.repeat(self.count, *([1] * (value.ndim - 1)))])
        if isinstance(value, (list, tuple)):
            return type(value)(self._widen(item) for item in value)
        if isinstance(value, dict):
            return {key: self._widen(item) for key, item in value.items()}
        return value

    def before(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
        call = dict(bound.arguments)
        sample = call["sample"]
        batch = sample.shape[0]
        if batch not in (self.images, 2 * self.images):
            raise GenerationError("Regional prompts met a denoiser batch they cannot split.")
        self._batch = batch
        text = call["encoder_hidden_states"]
        if text.shape[1:] != self.embeds.shape[1:]:
            raise GenerationError("The regions' prompts were encoded unlike the job's prompt.")
        widened = {
            name: self._widen(value) for name, value in call.items() if name != "encoder_hidden_states"
        }
        region_text = self.embeds.to(text.device, text.dtype).repeat_interleave(self.images, dim=0)
        widened["encoder_hidden_states"] = torch.cat([text, region_text])
        added = call.get("added_cond_kwargs")
        if added and self.pooled is not None and "text_embeds" in added:
            pooled = added["text_embeds"]
            region_pooled = self.pooled.to(pooled.device, pooled.dtype).repeat_interleave(self.images, dim=0)
            widened["added_cond_kwargs"] = {
                **widened["added_cond_kwargs"],
                "text_embeds": torch.cat([pooled, region_pooled]),
            }
        return (), widened

    def after(self, module: Any, args: Any, kwargs: Any, output: Any) -> Any:
        predicted = output[0] if isinstance(output, tuple) else output.sample
        batch, n = self._batch, self.images
        base_weight, region_weights = self.weights(predicted)
        cond = predicted[batch - n : batch]
        regional = predicted[batch:].reshape(self.count, n, *predicted.shape[1:])
        blended = base_weight * cond + (region_weights * regional).sum(dim=0)
        result = torch.cat([predicted[: batch - n], blended])
        if isinstance(output, tuple):
            return (result, *output[1:])
        output.sample = result
        return output


def encode(pipe: Any, prompts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The region prompts' text embeddings (and SDXL's pooled ones), as the pipeline encodes its own."""
    encoded = pipe.encode_prompt(
        prompt=prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
    )
    if len(encoded) == 4:  # SDXL: embeddings, negative, pooled, negative pooled
        return encoded[0], encoded[2]
    return encoded[0], None


@contextmanager
def applied(loaded: Any, pipe: Any, request: Any, images: int) -> Iterator[None]:
    """Apply ``request``'s regions (its ``params.regions`` and ``region_masks``) to ``pipe``'s UNet for one
    call making ``images`` images, and take the hooks off afterwards whatever happens. Nothing at all is
    done for a request without regions."""
    params = request.params
    if not params.regions:
        yield
        return
    if loaded.info.family not in REGION_FAMILIES or getattr(pipe, "unet", None) is None:
        raise GenerationError(f"{loaded.info.name} does not take regional prompts.")
    masks = request.region_masks or tuple(None for _ in params.regions)
    if len(masks) != len(params.regions):
        raise GenerationError("The job's regions and their masks do not match.")
    for region, mask in zip(params.regions, masks, strict=True):
        if mask is None and not region.box:
            raise GenerationError("A region's mask could not be read.")
    embeds = encode(pipe, [region.prompt for region in params.regions], loaded.device)
    state = RegionalPrompts(params, masks, images, embeds)
    unet = pipe.unet
    handles = []
    try:
        handles.append(unet.register_forward_pre_hook(state.before, with_kwargs=True))
        handles.append(unet.register_forward_hook(state.after, with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()
