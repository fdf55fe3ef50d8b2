"""Training the bundled demo model on procedurally drawn scenes, on a CPU, reproducibly from a seed.

Two phases, both on scenes drawn on the fly (``scenes.training_batch``), so nothing is stored:

1. The VAE alone, on crops around shapes with the loss weighted towards them (shapes cover a few percent
   of a picture), decoding the posterior mean plus a little noise, with a very small KL term.
2. The VAE frozen; the UNet and the CLIP text encoder trained jointly with the v-prediction diffusion loss,
   10% of captions blanked so classifier-free guidance works, AdamW with warm-up and cosine decay, and an
   exponential moving average of the weights (the EMA is what is saved: it samples much more cleanly than
   the raw weights after a short run).

The result is saved in the standard diffusers Stable Diffusion layout by ``demo.save_pipeline``, with
latent→RGB preview factors fitted against the trained VAE on scene images.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch
import transformers
from diffusers import DDPMScheduler
from tqdm import tqdm

from . import scenes
from .demo import Architecture, build_components, build_scheduler, build_tokenizer, save_pipeline


@dataclass(frozen=True)
class TrainingConfig:
    """Everything a run depends on; the same config and seed give the same weights on the same machine."""

    seed: int = 0
    vae_steps: int = 1500
    vae_batch: int = 32
    vae_crop: int = 32
    vae_lr: float = 5e-4
    kl_weight: float = 1e-6
    steps: int = 10000
    batch: int = 32
    lr: float = 5e-4
    warmup_steps: int = 250
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    uncond_prob: float = 0.1
    # The diffusion loss on latent pixels under a shape counts 1 + object_weight times. A shape covers a
    # few percent of a picture, so with a plain mean the flat background (learnt in a few hundred steps)
    # drowns out what the caption says about the shape: its colour, form and place. 0: a plain mean.
    object_weight: float = 8.0
    # Where a shape's form is learnt: at mid noise (signal-to-noise ratio about 0.1 to 5, t ≈ 130 to 580 of
    # 1000) the noisy latents show where an object is but not its form, and the caption must supply it.
    # Uniform timesteps spend 40% of the batch above t = 600, where the target is a blurred mean (background,
    # colour and place, learnt early). This share of each batch draws t from a logit-normal around
    # ``mid_noise_centre`` instead; the rest stay uniform, so no noise level goes untrained.
    mid_noise_share: float = 0.5
    mid_noise_centre: float = 0.35  # as a fraction of the schedule
    mid_noise_spread: float = 0.8  # standard deviation in logit space: 95% within t ≈ 100 to 730
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    # Both cores. The UNet + text encoder update (batch 32) on the 2-core AMD EPYC that trained the shipped
    # weights: 0.31 s with two threads, 0.52 s with one. OpenMP's threads spin while they wait, fastest on a
    # CPU left to training; on an earlier 2-core Xeon next to another busy process a step took 3.9 s
    # spinning against 0.96 s with OMP_WAIT_POLICY=PASSIVE in the environment. Set it on a shared machine.
    threads: int = 2
    snapshot_every: int = 0  # save the EMA weights as a model folder every N steps (0: never), to peek
    arch: Architecture = field(default_factory=Architecture)


@dataclass
class PhaseLog:
    """Loss and time of one training phase, for the model card."""

    steps: int = 0
    seconds: float = 0.0
    final_loss: float = float("nan")
    losses: list[float] = field(default_factory=list)  # mean loss per 1% of the phase
    load: list[float] = field(default_factory=list)  # 1-minute load average at each 1%: was the CPU shared?


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """B×H×W×3 uint8 → B×3×H×W float in [-1, 1], the VAE's input range."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def object_masks(images: np.ndarray, latent_size: int) -> torch.Tensor:
    """B×1×h×w share of each latent pixel's area that a shape covers. A scene's background is flat, so its
    colour is the median of the picture's border (shapes keep inside the picture, off most of the border);
    a pixel belongs to a shape when it differs from that colour (antialiased edges count in part)."""
    border = np.concatenate(
        [images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1
    )  # B×(4·size)×3
    background = np.median(border, axis=1)[:, None, None, :]
    diff = np.abs(images.astype(np.int16) - background.astype(np.int16)).sum(axis=-1)
    mask = torch.from_numpy(np.clip(diff / 96.0, 0.0, 1.0).astype(np.float32))[:, None]
    return torch.nn.functional.adaptive_avg_pool2d(mask, latent_size)


def sample_timesteps(count: int, config: TrainingConfig, total: int, gen: torch.Generator) -> torch.Tensor:
    """Training timesteps: uniform over the schedule, except that a ``mid_noise_share`` of them come from a
    logit-normal centred on ``mid_noise_centre`` (see ``TrainingConfig``)."""
    uniform = torch.randint(0, total, (count,), generator=gen)
    centre = math.log(config.mid_noise_centre / (1 - config.mid_noise_centre))
    logits = centre + config.mid_noise_spread * torch.randn(count, generator=gen)
    mid = (torch.sigmoid(logits) * total).long().clamp(0, total - 1)
    pick_mid = torch.rand(count, generator=gen) < config.mid_noise_share
    return torch.where(pick_mid, mid, uniform)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay to ``min_ratio`` of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class Ema:
    """Exponential moving average of parameters, its decay ramped up so early weights fade quickly."""

    def __init__(self, params: Iterable[torch.nn.Parameter], decay: float) -> None:
        self.params = list(params)
        self.shadow = [p.detach().clone() for p in self.params]
        self.decay = decay

    @torch.no_grad()
    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - decay)

    @torch.no_grad()
    def copy_to_params(self) -> None:
        for p, s in zip(self.params, self.shadow, strict=True):
            p.copy_(s)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange live and averaged weights (twice restores them), to save a snapshot mid-run."""
        for p, s in zip(self.params, self.shadow, strict=True):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)


class _LossTracker:
    """Running mean for the progress bar, and one mean per 1% of the phase for the record."""

    def __init__(self, total: int) -> None:
        self.bucket = max(1, total // 100)
        self.current: list[float] = []
        self.buckets: list[float] = []
        self.load: list[float] = []
        self.recent: list[float] = []

    def add(self, value: float) -> None:
        self.current.append(value)
        self.recent = (self.recent + [value])[-200:]
        if len(self.current) == self.bucket:
            self.buckets.append(round(float(np.mean(self.current)), 5))
            self.load.append(round(os.getloadavg()[0], 2))
            self.current = []

    @property
    def mean(self) -> float:
        return float(np.mean(self.recent)) if self.recent else float("nan")


def _progress(total: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, dynamic_ncols=True, mininterval=2.0)


def object_crops(x: torch.Tensor, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random size×size crops, most of them around an object, and per-pixel loss weights (5× on and next
    to objects).

    The VAE is convolutional, so it learns from crops what it needs for whole pictures, at a fraction of
    the cost; and since shapes cover a few percent of a picture, an unweighted loss spends nearly all its
    effort on flat background and leaves the shapes blurred."""
    background = x[:, :, :1, :1]  # a corner pixel: scenes keep shapes off the edges
    mask = ((x - background).abs().amax(dim=1, keepdim=True) > 0.05).float()
    near = torch.nn.functional.max_pool2d(mask, 5, stride=1, padding=2)
    weight = 1.0 + 4.0 * near
    if size >= x.shape[-1]:
        return x, weight
    limit = x.shape[-1] - size
    crops, weights = [], []
    for i in range(x.shape[0]):
        ys, xs = torch.nonzero(mask[i, 0], as_tuple=True)
        if len(ys) and torch.rand(1, generator=gen).item() < 0.75:
            k = int(torch.randint(len(ys), (1,), generator=gen))
            jitter = torch.randint(-size // 3, size // 3 + 1, (2,), generator=gen)
            top = int(ys[k]) - size // 2 + int(jitter[0])
            left = int(xs[k]) - size // 2 + int(jitter[1])
        else:
            top, left = (int(v) for v in torch.randint(0, limit + 1, (2,), generator=gen))
        top, left = min(max(top, 0), limit), min(max(left, 0), limit)
        crops.append(x[i, :, top : top + size, left : left + size])
        weights.append(weight[i, :, top : top + size, left : left + size])
    return torch.stack(crops), torch.stack(weights)


def train_vae(vae: Any, config: TrainingConfig, *, progress: bool = True) -> PhaseLog:
    """Phase 1: the VAE as an autoencoder of scenes (MSE + ½ L1 on pixels, tiny KL)."""
    log = PhaseLog(steps=config.vae_steps)
    gen = torch.Generator().manual_seed(config.seed + 1)
    opt = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    tracker = _LossTracker(config.vae_steps)
    vae.train()
    started = time.perf_counter()
    with _progress(config.vae_steps, "VAE", progress) as bar:
        for step in range(config.vae_steps):
            for group in opt.param_groups:
                group["lr"] = config.vae_lr * lr_factor(step, config.vae_steps, 100, config.min_lr_ratio)
            images, _ = scenes.training_batch(config.seed, step, config.vae_batch, stream="vae")
            x, weight = object_crops(to_tensor(images), config.vae_crop, gen)
            posterior = vae.encode(x).latent_dist
            # Decoding posterior samples from the start stalls training (the initial posterior is as wide
            # as the prior, so the decoder sees mostly noise); the mean plus noise at a tenth of the
            # latents' spread trains quickly and still teaches the decoder to tolerate the small errors a
            # diffusion model leaves. The KL term keeps the latents' scale in check.
            spread = posterior.mean.detach().std()
            z = posterior.mean + 0.1 * spread * torch.randn(posterior.mean.shape, generator=gen)
            recon = vae.decode(z).sample
            err = recon - x
            loss = (
                weight * (err.pow(2) + 0.5 * err.abs())
            ).mean() / weight.mean() + config.kl_weight * posterior.kl().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), config.grad_clip)
            opt.step()
            tracker.add(loss.item())
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{tracker.mean:.4f}")
    log.seconds = time.perf_counter() - started
    log.final_loss, log.losses, log.load = tracker.mean, tracker.buckets, tracker.load
    vae.eval().requires_grad_(False)
    return log


@torch.no_grad()
def latent_scaling(vae: Any, seed: int, batches: int = 8) -> float:
    """1 / std of the VAE's latents over scenes, so diffusion sees unit-variance latents (SD's 0.18215 is
    this number for its own VAE)."""
    latents = [
        vae.encode(to_tensor(scenes.training_batch(seed, i, 32, stream="scale")[0])).latent_dist.mean
        for i in range(batches)
    ]
    return round(1.0 / float(torch.cat(latents).std()), 5)


@torch.no_grad()
def vae_readback(vae: Any, count: int = 120) -> dict[str, float]:
    """The evaluation's reader on VAE reconstructions of true evaluation scenes: the ceiling the VAE puts
    on what the whole model can score."""
    from .evaluation import EvalResult, read_checks

    prompts = scenes.evaluation_scenes(count, seed=99)
    x = to_tensor(np.stack([scenes.render(s) for s in prompts]))
    recon = vae.decode(vae.encode(x).latent_dist.mean).sample
    images = ((recon.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    checks = read_checks([s.caption for s in prompts], [0] * count, list(images))
    return {k: round(v, 3) for k, v in EvalResult(checks, []).scores().items()}


class CaptionEncoder:
    """Tokenizes captions, caching ids (the same captions recur often) — exactly as the pipeline does:
    padded to the tokenizer's max length, no attention mask."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[str, torch.Tensor] = {}

    def ids(self, captions: list[str]) -> torch.Tensor:
        missing = [c for c in dict.fromkeys(captions) if c not in self.cache]
        if missing:
            out = self.tokenizer(
                missing,
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            self.cache.update(zip(missing, out, strict=True))
        return torch.stack([self.cache[c] for c in captions])


def train_diffusion(
    unet: Any,
    text_encoder: Any,
    vae: Any,
    tokenizer: Any,
    config: TrainingConfig,
    *,
    progress: bool = True,
    snapshot: Callable[[int], None] | None = None,
) -> PhaseLog:
    """Phase 2: UNet + text encoder, v-prediction on the frozen VAE's latents."""
    log = PhaseLog(steps=config.steps)
    gen = torch.Generator().manual_seed(config.seed + 2)
    inference_scheduler: Any = build_scheduler()
    noise_schedule = DDPMScheduler.from_config(inference_scheduler.config)
    scale = float(vae.config.scaling_factor)
    captions = CaptionEncoder(tokenizer)
    unet.train()
    text_encoder.train()
    params = [p for m in (unet, text_encoder) for p in m.parameters()]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.99),
    )
    ema = Ema(params, config.ema_decay)
    tracker = _LossTracker(config.steps)
    started = time.perf_counter()
    with _progress(config.steps, "UNet + text encoder", progress) as bar:
        for step in range(config.steps):
            for group in opt.param_groups:
                group["lr"] = config.lr * lr_factor(
                    step, config.steps, config.warmup_steps, config.min_lr_ratio
                )
            images, texts = scenes.training_batch(config.seed, step, config.batch, stream="diffusion")
            drop = (torch.rand(len(texts), generator=gen) < config.uncond_prob).tolist()
            ids = captions.ids(["" if d else t for d, t in zip(drop, texts, strict=True)])
            with torch.no_grad():
                latents = vae.encode(to_tensor(images)).latent_dist.mean * scale
            noise = torch.randn(latents.shape, generator=gen)
            timesteps = sample_timesteps(len(texts), config, noise_schedule.config.num_train_timesteps, gen)
            noisy = noise_schedule.add_noise(latents, noise, timesteps)
            target = noise_schedule.get_velocity(latents, noise, timesteps)
            states = text_encoder(ids)[0]
            pred = unet(noisy, timesteps, encoder_hidden_states=states).sample
            if config.object_weight:
                weights = 1.0 + config.object_weight * object_masks(images, latents.shape[-1])
                loss = ((pred - target) ** 2 * weights).mean() / weights.mean()
            else:
                loss = torch.nn.functional.mse_loss(pred, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            ema.update(step)
            if snapshot is not None and config.snapshot_every and (step + 1) % config.snapshot_every == 0:
                ema.swap()
                snapshot(step + 1)
                ema.swap()
            tracker.add(loss.item())
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{tracker.mean:.4f}")
    log.seconds = time.perf_counter() - started
    log.final_loss, log.losses, log.load = tracker.mean, tracker.buckets, tracker.load
    ema.copy_to_params()
    unet.eval()
    text_encoder.eval()
    return log


def cpu_name() -> str:
    """The CPU's model name, as lscpu shows it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def train_demo_model(
    out: Path,
    config: TrainingConfig,
    *,
    name: str = "Demo shapes",
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train from scratch and save the model folder at ``out`` (replaced only once training succeeded).

    Returns the training record, also saved as ``training.json`` in the folder for the model card."""
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    out = Path(out)
    partial = out.parent / f".{out.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    tokenizer = build_tokenizer(partial / "tokenizer")
    components = build_components(tokenizer, config.arch)
    vae, unet, text_encoder = components["vae"], components["unet"], components["text_encoder"]
    say(
        f"Parameters: UNet {parameter_count(unet) / 1e6:.2f} M, text encoder "
        f"{parameter_count(text_encoder) / 1e6:.2f} M, VAE {parameter_count(vae) / 1e6:.2f} M"
    )
    vae_log = train_vae(vae, config, progress=progress)
    scale = latent_scaling(vae, config.seed)
    vae.register_to_config(scaling_factor=scale)
    say(f"VAE done in {vae_log.seconds / 60:.1f} min (loss {vae_log.final_loss:.4f}); latent scale {scale}")
    readback = vae_readback(vae)
    say("VAE reconstructions read back right: " + ", ".join(f"{k} {v:.0%}" for k, v in readback.items()))
    fit_images = to_tensor(scenes.training_batch(config.seed, 0, 64, stream="preview")[0])

    def save_snapshot(step: int) -> None:
        folder = out.parent / f".{out.name}.step{step}"
        save_pipeline(folder, tokenizer, components, {"name": f"{name} (step {step})"}, fit_images=fit_images)
        say(f"Snapshot at step {step}: {folder}")

    diffusion_log = train_diffusion(
        unet, text_encoder, vae, tokenizer, config, progress=progress, snapshot=save_snapshot
    )
    save_pipeline(partial, tokenizer, components, {"name": name}, fit_images=fit_images, seed=config.seed)
    wall = time.perf_counter() - started
    record: dict[str, Any] = {
        "config": asdict(config),
        "parameters": {
            "unet": parameter_count(unet),
            "text_encoder": parameter_count(text_encoder),
            "vae": parameter_count(vae),
        },
        "latent_scaling": scale,
        "vae_readback": readback,
        "vae": asdict(vae_log),
        "diffusion": asdict(diffusion_log),
        "wall_seconds": round(wall, 1),
        "hardware": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "mean_load_average": round(float(np.mean(vae_log.load + diffusion_log.load or [0.0])), 2),
        },
        "software": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
        },
        "held_out_pairs": sorted(f"{c} {s}" for c, s in scenes.HELD_OUT_PAIRS),
    }
    (partial / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    say(f"Saved {out} after {wall / 60:.1f} min")
    return record


def folder_megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 1e6


BUNDLED_MODEL_DIR = Path(__file__).resolve().parents[1] / "demo_model"


CARD_TEMPLATE = """\
# {name}

A tiny text-to-image model, trained from scratch on a CPU, that draws flat-coloured shapes on flat
backgrounds. It is the studio's default model: it makes recognisable pictures in well under a second on a
CPU, so the studio can be tried, developed and tested with no GPU and no download. It is an ordinary
diffusers `StableDiffusionPipeline` folder (safetensors weights), loaded by the same registry and pipeline
code as any Stable Diffusion checkpoint. It knows only the words of its captions.

## Data

Procedurally drawn 64×64 scenes, generated on the fly from the seed (`generation/engine/scenes.py`):

- shapes: {shapes}
- colours, for objects and backgrounds: {colours}
- positions: {positions}; sizes: small, large
- a quarter of the scenes hold two shapes: *a red circle left of a blue square* (left of, right of, above,
  below)
- plain-English captions with paraphrases, e.g. *{example}*; a caption may leave out the size (either),
  the position (centre) or the background (white)
- held out of training (never drawn, as any object of any scene) and asked for by the evaluation:
  {held_out}

## Architecture

| component | configuration | parameters |
| --- | --- | --- |
| `AutoencoderKL` | blocks {vae_channels}, 4× down: 64×64×3 ↔ 16×16×4, scaling factor {scale} | {vae_m} M |
| `UNet2DConditionModel` | blocks {unet_channels}, cross-attention at 8×8, 4×4 and the middle | {unet_m} M |
| `CLIPTextModel` | width {text_width}, {text_layers} layers, 32 tokens | {text_m} M |
| `CLIPTokenizer` | byte-level BPE with whole-word merges for the caption words | |
| scheduler | `EulerDiscreteScheduler`, v-prediction, scaled-linear betas 0.00085–0.02, trailing | |

{total_m} M parameters in all; {weights_mb} MB of safetensors (fp32).

## Training

- seed {seed}: `python manage.py train_demo_model --seed {seed}` retrains it (the same weights on the same
  kind of CPU with the same thread count)
- VAE: {vae_steps} steps × {vae_batch} crops of {vae_crop}×{vae_crop} (most around a shape), AdamW lr
  {vae_lr}, MSE + ½ L1 weighted 5× on and next to shapes, + {kl_weight} × KL; final loss {vae_loss},
  {vae_min} min
- UNet + text encoder, VAE frozen: {steps} steps × batch {batch}, AdamW lr {lr} (warm-up {warmup}, cosine
  to {min_lr}), v-prediction MSE{object_loss}, {uncond} empty captions for classifier-free guidance,
  EMA {ema} (the EMA weights are saved); final loss {diffusion_loss}, {diffusion_min} min
- {timesteps}
- wall time {wall_min} min on {cpu}, {cores} cores, {threads} torch threads; mean 1-minute load average
  {load}{shared}
- software: Python {python}, torch {torch}, diffusers {diffusers}, transformers {transformers}
"""

CARD_EVALUATION = """
## Evaluation

`make eval-demo` (`python manage.py eval_demo_model`): prompts whose colour–shape pair was held out of
training, generated through the studio's job code (`runner.generate`) at the model's defaults, each picture
read back by pixel statistics with no knowledge of its prompt: background = median border colour; object =
largest blob of pixels far from it; colour = nearest palette colour; position = the 3×3 cell of its
centroid; shape = best intersection-over-union with each shape's template after cropping to the bounding box
(`generation/engine/evaluation.py`).

```
{table}
```
"""

CARD_SPEED = """
## Speed

One 64×64 picture, 20 Euler steps with classifier-free guidance: {seconds:.2f} s (median of 5, through
`runner.generate`, on the training machine, {threads} threads).
"""

CARD_LIMITS = """
## Limits

It draws only the shapes, colours and layouts above, at 64×64 (other sizes run but drift from what it
learnt). Words it has not seen are ignored at best. It is a demonstration and test fixture, not a general
image model.
"""


def render_model_card(record: dict[str, Any], folder: Path) -> str:
    """MODEL_CARD.md from the training record (and the evaluation and timing added to it)."""
    cfg, hw, params = record["config"], record["hardware"], record["parameters"]
    arch = cfg["arch"]
    shared = hw["mean_load_average"] > hw["torch_threads"] + 0.5
    rng = random.Random(0)  # noqa: S311 - picks a paraphrase
    example = scenes.single_scene(rng, "yellow", "star", "small", "top left", "black", template=0)
    text = CARD_TEMPLATE.format(
        name=record.get("name", "Demo shapes"),
        shapes=", ".join(scenes.SHAPES),
        colours=", ".join(scenes.COLOURS),
        positions=", ".join(scenes.POSITIONS),
        example=example.caption,
        held_out=", ".join(record["held_out_pairs"]),
        vae_channels=tuple(arch["vae_channels"]),
        unet_channels=tuple(arch["unet_channels"]),
        text_width=arch["text_width"],
        text_layers=arch["text_layers"],
        scale=record["latent_scaling"],
        vae_m=f"{params['vae'] / 1e6:.2f}",
        unet_m=f"{params['unet'] / 1e6:.2f}",
        text_m=f"{params['text_encoder'] / 1e6:.2f}",
        total_m=f"{sum(params.values()) / 1e6:.2f}",
        weights_mb=f"{sum(p.stat().st_size for p in folder.rglob('*.safetensors')) / 1e6:.1f}",
        seed=cfg["seed"],
        vae_steps=cfg["vae_steps"],
        vae_batch=cfg["vae_batch"],
        vae_crop=cfg["vae_crop"],
        vae_lr=cfg["vae_lr"],
        kl_weight=cfg["kl_weight"],
        vae_loss=f"{record['vae']['final_loss']:.4f}",
        vae_min=f"{record['vae']['seconds'] / 60:.1f}",
        steps=cfg["steps"],
        batch=cfg["batch"],
        lr=cfg["lr"],
        warmup=cfg["warmup_steps"],
        min_lr=f"{cfg['min_lr_ratio']:.0%}",
        uncond=f"{cfg['uncond_prob']:.0%}",
        object_loss=(
            f" counting {1 + cfg['object_weight']:g}× on latent pixels under shapes"
            if cfg.get("object_weight")
            else ""
        ),
        timesteps=(
            f"timesteps: uniform, except {cfg['mid_noise_share']:.0%} of each batch drawn from a "
            f"logit-normal\n  around t = {cfg['mid_noise_centre'] * 1000:.0f} of 1000 "
            f"(σ {cfg['mid_noise_spread']} in logit space), the noise levels where a shape's form is learnt"
            if cfg.get("mid_noise_share")
            else "timesteps: uniform"
        ),
        ema=cfg["ema_decay"],
        diffusion_loss=f"{record['diffusion']['final_loss']:.4f}",
        diffusion_min=f"{record['diffusion']['seconds'] / 60:.1f}",
        wall_min=f"{record['wall_seconds'] / 60:.1f}",
        cpu=hw["cpu"],
        cores=hw["cores"],
        threads=hw["torch_threads"],
        load=hw["mean_load_average"],
        shared=" (the machine was shared with other work; uncontended it is faster)" if shared else "",
        **record["software"],
    )
    if "evaluation" in record:
        text += CARD_EVALUATION.format(table=record["evaluation"]["table"])
    if "seconds_per_image" in record:
        text += CARD_SPEED.format(seconds=record["seconds_per_image"], threads=hw["torch_threads"])
    text += CARD_LIMITS
    failures = record.get("evaluation", {}).get("failures", [])
    if failures:
        scores = record["evaluation"]["scores"]
        missed = ", ".join(f"{evaluation_label(key)} ({scores[key]:.0%})" for key in failures)
        text += f"\nIt misses these evaluation targets: {missed}.\n"
    return text


def evaluation_label(key: str) -> str:
    from .evaluation import CHECK_LABELS

    return CHECK_LABELS.get(key, key)
