"""Builds the demo model's components: a small text-to-image model in the standard diffusers Stable Diffusion
layout.

The same builders make the trained demo model (``training.py``) and the random-weight one the tests and a
fresh install use, so both are one architecture. Either is an ordinary ``StableDiffusionPipeline`` folder
(safetensors weights, ``model_index.json``, a CLIP tokenizer whose vocabulary is built here), and loads
through exactly the same registry and pipeline code as a real checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from . import scenes
from .bpe import bytes_to_unicode
from .preview import fit_latent_rgb_factors

BOS, EOS = "<|startoftext|>", "<|endoftext|>"

# Words the tokenizer knows whole (every caption word, plus a few a person might type); anything else is
# spelt out character by character.
VOCABULARY_WORDS = sorted(
    set(
        """
a an the on in of and with at to left right top bottom centre center middle corner small large big tiny huge
red orange yellow green cyan blue purple magenta pink white black grey gray brown
circle square triangle star ring cross diamond heart disc dot box
background above below beside next near upper lower
""".split()
    )
    | set(scenes.vocabulary())
)

# Captions are a dozen or so words; a short context keeps the text encoder and cross-attention cheap.
MAX_TOKENS = 32


@dataclass(frozen=True)
class Architecture:
    """The demo model's sizes. 64×64 images, a 4× VAE (16×16×4 latents), a three-level UNet with
    attention at 8×8 and 4×4 (attention at 16×16 doubled the step time for little gain)."""

    image_size: int = 64
    unet_channels: tuple[int, ...] = (48, 96, 96)
    text_width: int = 64
    text_layers: int = 2
    vae_channels: tuple[int, ...] = (16, 32, 64)


def build_tokenizer_files(folder: Path, words: list[str]) -> int:
    """Write vocab.json and merges.txt: every byte, plus whole-word merges for ``words``; returns the size."""
    chars = list(bytes_to_unicode().values())
    vocab: list[str] = chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    seen = set(vocab)
    for word in sorted(set(words)):
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols) > 1:
            merged = symbols[0] + symbols[1]
            merge = f"{symbols[0]} {symbols[1]}"
            if merge not in merges:
                merges.append(merge)
            if merged not in seen:
                seen.add(merged)
                vocab.append(merged)
            symbols = [merged] + symbols[2:]
    vocab += [BOS, EOS]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(
        json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False)
    )
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return len(vocab)


def build_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP tokenizer over the demo vocabulary, its files written to ``folder``."""
    build_tokenizer_files(folder, VOCABULARY_WORDS)
    return CLIPTokenizer(
        str(folder / "vocab.json"),
        str(folder / "merges.txt"),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=EOS,
        model_max_length=MAX_TOKENS,
    )


def build_scheduler() -> EulerDiscreteScheduler:
    """The inference scheduler (its config is also the training noise schedule).

    v-prediction with betas up to 0.02 leaves almost no signal at the last timestep (ᾱ_T ≈ 2e-4, against
    5e-3 for Stable Diffusion's 0.012): sampling from pure noise then matches training, which is what lets
    a flat background come out the colour asked for. "trailing" spacing starts sampling at t = 999."""
    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.02,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        timestep_spacing="trailing",
        steps_offset=1,
    )


def build_components(
    tokenizer: CLIPTokenizer, arch: Architecture, *, vae_scaling: float = 1.0
) -> dict[str, Any]:
    """Fresh (random-weight) text encoder, VAE and UNet for ``arch``; seed torch before calling."""
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=arch.text_width,
            intermediate_size=arch.text_width * 2,
            num_hidden_layers=arch.text_layers,
            num_attention_heads=2,
            max_position_embeddings=MAX_TOKENS,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    n_vae = len(arch.vae_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n_vae,
        up_block_types=("UpDecoderBlock2D",) * n_vae,
        block_out_channels=arch.vae_channels,
        layers_per_block=1,
        latent_channels=4,
        # Few, wide groups: a group norm over one or two channels erases the flat colour a region has, and
        # these pictures are mostly flat colour.
        norm_num_groups=4,
        mid_block_add_attention=False,
        sample_size=arch.image_size,
        scaling_factor=vae_scaling,
    )
    n = len(arch.unet_channels)
    down_factor = 2 ** (n_vae - 1)
    # Attention everywhere but the finest level (when there is more than one).
    attention = [i > 0 or n == 1 for i in range(n)]
    unet = UNet2DConditionModel(
        sample_size=arch.image_size // down_factor,
        in_channels=4,
        out_channels=4,
        block_out_channels=arch.unet_channels,
        layers_per_block=1,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        cross_attention_dim=arch.text_width,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    return {"text_encoder": text_encoder, "vae": vae, "unet": unet}


def save_pipeline(
    path: Path,
    tokenizer: CLIPTokenizer,
    components: dict[str, Any],
    meta: dict[str, Any],
    *,
    fit_images: torch.Tensor | None = None,
    seed: int = 0,
) -> Path:
    """Save a diffusers folder (safetensors) plus ``studio.json`` with preview factors fitted to its VAE."""
    path = Path(path)
    vae = components["vae"]
    pipe: Any = StableDiffusionPipeline(
        vae=vae,
        text_encoder=components["text_encoder"],
        tokenizer=tokenizer,
        unet=components["unet"],
        scheduler=build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(path), safe_serialization=True)
    size = int(vae.config.sample_size)
    factors, bias = fit_latent_rgb_factors(
        vae, vae.config.scaling_factor, size=size, seed=seed, images=fit_images
    )
    full = {
        "family": "demo",
        "default_width": size,
        "default_height": size,
        "default_steps": 20,
        "default_guidance": 5.0,
        "default_scheduler": "Euler",
        "min_size": 32,
        "max_size": 256,
        **meta,
        "latent_rgb_factors": factors,
        "latent_rgb_bias": bias,
    }
    (path / "studio.json").write_text(json.dumps(full, indent=2) + "\n")
    return path


def build_random_model(
    path: Path,
    *,
    name: str = "Demo (random weights)",
    seed: int = 0,
    image_size: int = 64,
    unet_channels: tuple[int, ...] = Architecture.unet_channels,
    text_width: int = 64,
) -> Path:
    """Write a random-weight Stable Diffusion pipeline folder at ``path``, of the trained demo model's
    architecture unless told otherwise."""
    torch.manual_seed(seed)
    path = Path(path)
    arch = Architecture(image_size=image_size, unet_channels=tuple(unet_channels), text_width=text_width)
    tokenizer = build_tokenizer(path / "tokenizer")
    components = build_components(tokenizer, arch, vae_scaling=0.5)
    return save_pipeline(path, tokenizer, components, {"name": name}, seed=seed)
