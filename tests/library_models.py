"""Tiny random-weight models of every family, in each family's real layout, for the model library tests.

``build_folder(family, path)`` writes a diffusers folder (the pipeline class and components a published model
of that family has, only tiny). ``build_single_file(path)`` writes a Stable Diffusion 1.x checkpoint in the
original single-file layout (``model.diffusion_model.*``, ``first_stage_model.*``,
``cond_stage_model.transformer.*``) and returns the component configs it loads with, as a config folder like
the shipped ones. The text encoders read the studio's shipped CLIP vocabulary.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    PNDMScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING
from safetensors.torch import save_file
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

from generation.engine import pipelines

TEXT_WIDTH = 32
FAMILY_SIZES = {"sd1": 256, "sd2": 256, "sdxl": 512, "sd3": 512, "flux": 512}


def clip_text(cls: Any = CLIPTextModel, *, projection: int = TEXT_WIDTH) -> Any:
    return cls(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=TEXT_WIDTH,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=projection,
            hidden_act="quick_gelu",
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=1,
        )
    )


def vae(latent_channels: int = 4, **extra: Any) -> AutoencoderKL:
    """The real VAE's layout (four levels: 8× smaller latents) with a handful of channels."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=64,
        **extra,
    )


def sd_unet(cross_attention_dim: int = TEXT_WIDTH, **extra: Any) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,
        **extra,
    )


def t5_tokenizer() -> T5TokenizerFast:
    words = "a an the red blue green circle square on of and cat dog".split()
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"▁{w}", -1.0) for w in words]
    vocab += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz▁"]
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=32)


def t5_encoder(width: int) -> T5EncoderModel:
    config = T5Config(
        vocab_size=len(t5_tokenizer()),
        d_model=width,
        d_ff=37,
        d_kv=8,
        num_layers=1,
        num_heads=4,
        relative_attention_num_buckets=8,
    )
    return T5EncoderModel(config)


def build_folder(family: str, path: Path, seed: int = 0) -> Path:
    """A tiny random-weight diffusers folder of ``family`` at ``path``."""
    torch.manual_seed(seed)
    clip_tokenizer = pipelines.clip_tokenizer({"pad_token": "<|endoftext|>"})
    open_clip_tokenizer = pipelines.clip_tokenizer({"pad_token": "!"})
    pipe: Any
    if family in ("sd1", "sd2"):
        scheduler = PNDMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            skip_prk_steps=True,
            steps_offset=1,
            prediction_type="v_prediction" if family == "sd2" else "epsilon",
        )
        pipe = StableDiffusionPipeline(
            vae=vae(),
            text_encoder=clip_text(),
            tokenizer=clip_tokenizer if family == "sd1" else open_clip_tokenizer,
            unet=sd_unet(use_linear_projection=family == "sd2"),
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    elif family == "sdxl":
        from diffusers import EulerDiscreteScheduler

        pipe = StableDiffusionXLPipeline(
            vae=vae(),
            text_encoder=clip_text(),
            text_encoder_2=clip_text(CLIPTextModelWithProjection),
            tokenizer=clip_tokenizer,
            tokenizer_2=open_clip_tokenizer,
            unet=sd_unet(
                cross_attention_dim=2 * TEXT_WIDTH,
                addition_embed_type="text_time",
                addition_time_embed_dim=8,
                projection_class_embeddings_input_dim=6 * 8 + TEXT_WIDTH,
                use_linear_projection=True,
            ),
            scheduler=EulerDiscreteScheduler(
                beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012
            ),
        )
    elif family == "sd3":
        pipe = StableDiffusion3Pipeline(
            transformer=SD3Transformer2DModel(
                sample_size=32,
                patch_size=2,
                in_channels=16,
                num_layers=1,
                attention_head_dim=8,
                num_attention_heads=4,
                joint_attention_dim=2 * TEXT_WIDTH,
                caption_projection_dim=32,
                pooled_projection_dim=2 * TEXT_WIDTH,
                out_channels=16,
                pos_embed_max_size=64,
            ),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            vae=vae(
                16, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.06, scaling_factor=1.5
            ),
            text_encoder=clip_text(CLIPTextModelWithProjection),
            tokenizer=clip_tokenizer,
            text_encoder_2=clip_text(CLIPTextModelWithProjection),
            tokenizer_2=open_clip_tokenizer,
            text_encoder_3=t5_encoder(TEXT_WIDTH * 2),
            tokenizer_3=t5_tokenizer(),
        )
    elif family == "flux":
        pipe = FluxPipeline(
            transformer=FluxTransformer2DModel(
                patch_size=1,
                in_channels=64,
                num_layers=1,
                num_single_layers=1,
                attention_head_dim=16,
                num_attention_heads=2,
                joint_attention_dim=TEXT_WIDTH,
                pooled_projection_dim=TEXT_WIDTH,
                guidance_embeds=True,
                axes_dims_rope=(4, 4, 8),
            ),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0),
            vae=vae(
                16, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1, scaling_factor=0.4
            ),
            text_encoder=clip_text(),
            tokenizer=clip_tokenizer,
            text_encoder_2=t5_encoder(TEXT_WIDTH),
            tokenizer_2=t5_tokenizer(),
        )
    else:
        raise ValueError(family)
    pipe.save_pretrained(str(path), safe_serialization=True)
    return path


# --- the original single-file layout (the reverse of diffusers' single-file conversion) --

RESNET_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
VAE_ATTENTION_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _resnet(rest: str, names: dict[str, str]) -> str:
    head, _, tail = rest.partition(".")
    return f"{names.get(head, head)}.{tail}"


def ldm_unet_key(key: str, config: dict[str, Any]) -> str:
    per = config["layers_per_block"] + 1
    top = {
        **DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"],
        **DIFFUSERS_TO_LDM_MAPPING["unet"]["addition_embed_type"],
    }
    if key in top:
        return top[key]
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        b, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        i = 1 + b * per + layer
        return (
            f"input_blocks.{i}.0.{_resnet(rest, RESNET_NAMES)}"
            if kind == "resnets"
            else f"input_blocks.{i}.1.{rest}"
        )
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{1 + int(m[1]) * per + per - 1}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet(m[2], RESNET_NAMES)}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        b, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        i = b * per + layer
        return (
            f"output_blocks.{i}.0.{_resnet(rest, RESNET_NAMES)}"
            if kind == "resnets"
            else f"output_blocks.{i}.1.{rest}"
        )
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        b = int(m[1])
        slot = 2 if "CrossAttn" in config["up_block_types"][b] else 1
        return f"output_blocks.{b * per + per - 1}.{slot}.conv.{m[2]}"
    raise KeyError(key)


def ldm_vae_item(key: str, value: torch.Tensor, config: dict[str, Any]) -> tuple[str, torch.Tensor]:
    n = len(config["up_block_types"])
    shortcut = {"conv_shortcut": "nin_shortcut"}
    for coder in ("encoder", "decoder"):
        if m := re.match(rf"{coder}\.mid_block\.attentions\.0\.(.*)\.(weight|bias)$", key):
            name = VAE_ATTENTION_NAMES[m[1]]
            if value.ndim == 2:  # the original uses 1×1 convolutions
                value = value[:, :, None, None]
            return f"{coder}.mid.attn_1.{name}.{m[2]}", value
        if m := re.match(rf"{coder}\.mid_block\.resnets\.(\d+)\.(.*)", key):
            return f"{coder}.mid.block_{int(m[1]) + 1}.{_resnet(m[2], shortcut)}", value
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{_resnet(m[3], shortcut)}", value
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}", value
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        return f"decoder.up.{n - 1 - int(m[1])}.block.{m[2]}.{_resnet(m[3], shortcut)}", value
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        return f"decoder.up.{n - 1 - int(m[1])}.upsample.conv.{m[2]}", value
    return key.replace("conv_norm_out", "norm_out"), value


def build_single_file(checkpoint: Path, configs_root: Path, seed: int = 0) -> Path:
    """A tiny SD 1.x checkpoint in the original single-file layout at ``checkpoint``; its component configs
    (what ``generation/engine/configs/sd1/`` is for the real model) go to ``configs_root/sd1/``."""
    folder = build_folder("sd1", checkpoint.parent / f".{checkpoint.stem}-diffusers", seed)
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None)
    tensors: dict[str, torch.Tensor] = {}
    unet_config = dict(pipe.unet.config)
    for key, value in pipe.unet.state_dict().items():
        tensors["model.diffusion_model." + ldm_unet_key(key, unet_config)] = value
    for key, value in pipe.vae.state_dict().items():
        name, value = ldm_vae_item(key, value, dict(pipe.vae.config))
        tensors["first_stage_model." + name] = value
    for key, value in pipe.text_encoder.state_dict().items():
        # (the original's names, as OpenAI's CLIP had them: under text_model.)
        tensors[
            "cond_stage_model.transformer." + ("" if key.startswith("text_model.") else "text_model.") + key
        ] = value
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(checkpoint))
    target = configs_root / "sd1"
    for sub in ("unet", "vae", "text_encoder", "scheduler"):
        (target / sub).mkdir(parents=True, exist_ok=True)
        for config in (folder / sub).glob("*.json"):
            shutil.copy(config, target / sub / config.name)
    index = json.loads((folder / "model_index.json").read_text())
    (target / "model_index.json").write_text(json.dumps(index))
    (target / "tokenizers.json").write_text(json.dumps({"tokenizer": {"pad_token": "<|endoftext|>"}}))
    shutil.rmtree(folder)
    return checkpoint
