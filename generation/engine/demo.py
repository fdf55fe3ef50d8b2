"""Builds a small text-to-image model in the standard diffusers Stable Diffusion layout.

Used for the embedded mode's default model until trained weights are installed, and by the tests. It is an
ordinary ``StableDiffusionPipeline`` folder (safetensors weights, ``model_index.json``, a CLIP tokenizer whose
vocabulary is built here), so it loads through exactly the same registry and pipeline code as a real
checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from .preview import fit_latent_rgb_factors

BOS, EOS = "<|startoftext|>", "<|endoftext|>"

# Words the tokenizer knows whole; anything else is spelt out character by character.
VOCABULARY_WORDS = """
a an the on in of and with at to left right top bottom centre center middle corner small large big tiny huge
red orange yellow green cyan blue purple magenta pink white black grey gray brown
circle square triangle star ring cross diamond heart disc dot box
background above below beside next near upper lower
""".split()


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte → printable-character table."""
    bs = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


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


def build_random_model(
    path: Path,
    *,
    name: str = "Demo (random weights)",
    seed: int = 0,
    image_size: int = 64,
    unet_channels: tuple[int, ...] = (32, 64),
    text_width: int = 64,
) -> Path:
    """Write a random-weight Stable Diffusion pipeline folder at ``path``."""
    torch.manual_seed(seed)
    path = Path(path)
    tok_dir = path / "tokenizer"
    vocab_size = build_tokenizer_files(tok_dir, VOCABULARY_WORDS)
    tokenizer = CLIPTokenizer(
        str(tok_dir / "vocab.json"),
        str(tok_dir / "merges.txt"),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=EOS,
        model_max_length=77,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=text_width,
            intermediate_size=text_width * 2,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    vae: Any = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=image_size,
        scaling_factor=0.5,
    )
    n = len(unet_channels)
    unet = UNet2DConditionModel(
        sample_size=image_size // 4,
        in_channels=4,
        out_channels=4,
        block_out_channels=unet_channels,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        cross_attention_dim=text_width,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        timestep_spacing="trailing",
        steps_offset=1,
    )
    pipe: Any = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(path), safe_serialization=True)
    factors, bias = fit_latent_rgb_factors(vae, vae.config.scaling_factor, size=image_size, seed=seed)
    meta = {
        "name": name,
        "family": "demo",
        "default_width": image_size,
        "default_height": image_size,
        "default_steps": 20,
        "default_guidance": 5.0,
        "default_scheduler": "Euler",
        "min_size": 32,
        "max_size": 256,
        "latent_rgb_factors": factors,
        "latent_rgb_bias": bias,
    }
    (path / "studio.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path
