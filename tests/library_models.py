"""Tiny random-weight models of every family, in each family's real layout, for the model library tests.

``build_folder(family, path)`` writes a diffusers folder (the pipeline class and components a published model
of that family has, only tiny). ``build_single_file(path, configs_root, family=...)`` writes the same model
(same seed, same weights) as a checkpoint in its family's original single-file layout, the one diffusers'
single-file loader recognises: SD 1.x/2.x ``model.diffusion_model.*``, ``first_stage_model.*`` and
``cond_stage_model.*`` (OpenAI CLIP, or OpenCLIP for 2.x); SDXL ``conditioner.embedders.0/1.*``; SD3 Medium
``model.diffusion_model.joint_blocks.*`` and ``text_encoders.clip_l/clip_g.*``. It writes the component
configs it loads with as a config folder like the shipped ones. The text encoders read the studio's shipped
CLIP vocabulary.

What the detection needs from the real models is kept: SD2's text encoder is 1024 wide (its cross-attention
width is how SD2 checkpoints are told from SD1 ones), the second text encoder of SDXL and SD3 is wider than
the first (that is how the loader tells OpenCLIP-G from CLIP-L), and SD3 has SD3 Medium's 24 joint blocks.
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
    ControlNetModel,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxControlNetModel,
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
from generation.library import SD3_MEDIUM_LAYERS

TEXT_WIDTH = 32  # CLIP-L
BIG_TEXT_WIDTH = 48  # OpenCLIP-G (SDXL, SD3)
SD2_TEXT_WIDTH = 1024  # OpenCLIP-H (SD 2.x)
SD3_T5_WIDTH = 96  # wider than both CLIP encoders together, as T5-XXL is
FAMILY_SIZES = {"sd1": 256, "sd2": 256, "sdxl": 512, "sd3": 512, "flux": 512}


def clip_text(cls: Any = CLIPTextModel, *, width: int = TEXT_WIDTH, layers: int = 2) -> Any:
    return cls(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=width,
            intermediate_size=37,
            num_hidden_layers=layers,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=width,
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


def tiny_pipeline(family: str, seed: int = 0, *, t5: bool = True) -> Any:
    """A tiny random-weight pipeline of ``family`` (``t5=False``: SD3 without its T5 encoder, as its
    single-file checkpoints come)."""
    torch.manual_seed(seed)
    clip_tokenizer = pipelines.clip_tokenizer({"pad_token": "<|endoftext|>"})
    open_clip_tokenizer = pipelines.clip_tokenizer({"pad_token": "!"})
    if family in ("sd1", "sd2"):
        width = TEXT_WIDTH if family == "sd1" else SD2_TEXT_WIDTH
        scheduler = PNDMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            skip_prk_steps=True,
            steps_offset=1,
            prediction_type="v_prediction" if family == "sd2" else "epsilon",
        )
        return StableDiffusionPipeline(
            vae=vae(),
            text_encoder=clip_text(width=width, layers=2 if family == "sd1" else 1),
            tokenizer=clip_tokenizer if family == "sd1" else open_clip_tokenizer,
            unet=sd_unet(cross_attention_dim=width, use_linear_projection=family == "sd2"),
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    if family == "sdxl":
        return StableDiffusionXLPipeline(
            vae=vae(),
            text_encoder=clip_text(),
            text_encoder_2=clip_text(CLIPTextModelWithProjection, width=BIG_TEXT_WIDTH),
            tokenizer=clip_tokenizer,
            tokenizer_2=open_clip_tokenizer,
            unet=sd_unet(
                cross_attention_dim=TEXT_WIDTH + BIG_TEXT_WIDTH,
                addition_embed_type="text_time",
                addition_time_embed_dim=8,
                projection_class_embeddings_input_dim=6 * 8 + BIG_TEXT_WIDTH,
                use_linear_projection=True,
            ),
            scheduler=EulerDiscreteScheduler(
                beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012
            ),
        )
    if family == "sd3":
        clip_l = clip_text(CLIPTextModelWithProjection)
        # SD3's CLIP-L pools without a projection (its checkpoints carry none): an identity one.
        with torch.no_grad():
            clip_l.text_projection.weight.copy_(torch.eye(TEXT_WIDTH))
        return StableDiffusion3Pipeline(
            transformer=SD3Transformer2DModel(
                sample_size=32,
                patch_size=2,
                in_channels=16,
                num_layers=SD3_MEDIUM_LAYERS,
                attention_head_dim=8,
                num_attention_heads=4,
                joint_attention_dim=SD3_T5_WIDTH,
                caption_projection_dim=32,
                pooled_projection_dim=TEXT_WIDTH + BIG_TEXT_WIDTH,
                out_channels=16,
                pos_embed_max_size=64,
            ),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            vae=vae(
                16, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.06, scaling_factor=1.5
            ),
            text_encoder=clip_l,
            tokenizer=clip_tokenizer,
            text_encoder_2=clip_text(CLIPTextModelWithProjection, width=BIG_TEXT_WIDTH),
            tokenizer_2=open_clip_tokenizer,
            text_encoder_3=t5_encoder(SD3_T5_WIDTH) if t5 else None,
            tokenizer_3=t5_tokenizer() if t5 else None,
        )
    if family == "flux":
        return FluxPipeline(
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
    raise ValueError(family)


def build_folder(family: str, path: Path, seed: int = 0, *, t5: bool = True) -> Path:
    """A tiny random-weight diffusers folder of ``family`` at ``path``."""
    tiny_pipeline(family, seed, t5=t5).save_pretrained(str(path), safe_serialization=True)
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


def hf_clip_items(model: Any, prefix: str) -> dict[str, torch.Tensor]:
    """A transformers CLIP text model under ``prefix`` in its own layout (``text_model.*``, as OpenAI's CLIP
    and the SD3 checkpoints have it; newer transformers drop the ``text_model.`` level of CLIPTextModel)."""
    return {
        prefix + ("" if key.startswith(("text_model.", "text_projection.")) else "text_model.") + key: value
        for key, value in model.state_dict().items()
        if not key.endswith("position_ids")
    }


OPEN_CLIP_NAMES = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def open_clip_items(model: Any, prefix: str) -> dict[str, torch.Tensor]:
    """A CLIP text model in OpenCLIP's layout under ``prefix`` (SD 2.x ``cond_stage_model.model.``, SDXL
    ``conditioner.embedders.1.model.``): fused attention in-projections, ``resblocks``, a transposed
    ``text_projection``."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in model.state_dict().items():
        key = key.removeprefix("text_model.")
        if key.endswith("position_ids"):
            continue
        if key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif key == "embeddings.token_embedding.weight":
            out[prefix + "token_embedding.weight"] = value
        elif key == "embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = value
        elif key.startswith("final_layer_norm."):
            out[prefix + "ln_final." + key.rpartition(".")[2]] = value
        elif m := re.match(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$", key):
            fused.setdefault(f"{prefix}transformer.resblocks.{m[1]}.attn.in_proj_{m[3]}", {})[m[2]] = value
        elif m := re.match(r"encoder\.layers\.(\d+)\.(.*)\.(weight|bias)$", key):
            out[f"{prefix}transformer.resblocks.{m[1]}.{OPEN_CLIP_NAMES[m[2]]}.{m[3]}"] = value
        else:
            raise KeyError(key)
    for name, parts in fused.items():
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def _swap_halves(value: torch.Tensor) -> torch.Tensor:
    """(shift, scale) ↔ (scale, shift): the original and diffusers order the final modulations apart."""
    first, second = value.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


SD3_TOP = {
    "pos_embed.proj": "x_embedder.proj",
    "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
    "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
    "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
    "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
    "context_embedder": "context_embedder",
    "proj_out": "final_layer.linear",
    "norm_out.linear": "final_layer.adaLN_modulation.1",
}
SD3_BLOCK = {
    "attn.to_out.0": "x_block.attn.proj",
    "attn.to_add_out": "context_block.attn.proj",
    "norm1.linear": "x_block.adaLN_modulation.1",
    "norm1_context.linear": "context_block.adaLN_modulation.1",
    "ff.net.0.proj": "x_block.mlp.fc1",
    "ff.net.2": "x_block.mlp.fc2",
    "ff_context.net.0.proj": "context_block.mlp.fc1",
    "ff_context.net.2": "context_block.mlp.fc2",
}
SD3_QKV = {"to_": "x_block.attn.qkv", "add_": "context_block.attn.qkv"}


def sd3_transformer_items(transformer: Any, prefix: str) -> dict[str, torch.Tensor]:
    """SD3's MMDiT in the original layout (``joint_blocks.N.x_block/context_block``, fused qkv)."""
    last = transformer.config.num_layers - 1
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in transformer.state_dict().items():
        module, _, kind = key.rpartition(".")
        if key == "pos_embed.pos_embed":
            out[prefix + "pos_embed"] = value
        elif module in SD3_TOP:
            swap = module == "norm_out.linear"
            out[f"{prefix}{SD3_TOP[module]}.{kind}"] = _swap_halves(value) if swap else value
        elif m := re.match(r"transformer_blocks\.(\d+)\.attn\.(to_|add_)([qkv])(?:_proj)?$", module):
            fused.setdefault(f"{prefix}joint_blocks.{m[1]}.{SD3_QKV[m[2]]}.{kind}", {})[m[3]] = value
        elif m := re.match(r"transformer_blocks\.(\d+)\.(.*)$", module):
            swap = int(m[1]) == last and m[2] == "norm1_context.linear"
            name = f"{prefix}joint_blocks.{m[1]}.{SD3_BLOCK[m[2]]}.{kind}"
            out[name] = _swap_halves(value) if swap else value
        else:
            raise KeyError(key)
    for name, parts in fused.items():
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


# What each family's single file holds besides its denoiser and VAE: its text encoders.
def _text_encoder_items(family: str, pipe: Any) -> dict[str, torch.Tensor]:
    if family == "sd1":
        return hf_clip_items(pipe.text_encoder, "cond_stage_model.transformer.")
    if family == "sd2":
        return open_clip_items(pipe.text_encoder, "cond_stage_model.model.")
    if family == "sdxl":
        return {
            **hf_clip_items(pipe.text_encoder, "conditioner.embedders.0.transformer."),
            **open_clip_items(pipe.text_encoder_2, "conditioner.embedders.1.model."),
        }
    if family == "sd3":
        clip_l = hf_clip_items(pipe.text_encoder, "text_encoders.clip_l.transformer.")
        return {
            **{k: v for k, v in clip_l.items() if not k.endswith("text_projection.weight")},
            **hf_clip_items(pipe.text_encoder_2, "text_encoders.clip_g.transformer."),
        }
    raise ValueError(f"{family} has no single-file layout here")


TOKENIZERS = {
    "sd1": {"tokenizer": {"pad_token": "<|endoftext|>"}},
    "sd2": {"tokenizer": {"pad_token": "!"}},
    "sdxl": {"tokenizer": {"pad_token": "<|endoftext|>"}, "tokenizer_2": {"pad_token": "!"}},
    "sd3": {"tokenizer": {"pad_token": "<|endoftext|>"}, "tokenizer_2": {"pad_token": "!"}},
}


def build_single_file(
    checkpoint: Path, configs_root: Path, seed: int = 0, *, family: str = "sd1", folder: Path | None = None
) -> Path:
    """A tiny ``family`` checkpoint in the original single-file layout at ``checkpoint``; its component
    configs (what ``generation/engine/configs/<family>/`` is for the real model) go to
    ``configs_root/<family>/``. ``folder``: also keep the same model (same weights) there as a diffusers
    folder; for SD3 that is the model without T5, as its single file has none."""
    pipe = tiny_pipeline(family, seed, t5=False)
    kept = folder or checkpoint.parent / f".{checkpoint.stem}-diffusers"
    pipe.save_pretrained(str(kept), safe_serialization=True)
    tensors: dict[str, torch.Tensor] = {}
    if family == "sd3":
        tensors.update(sd3_transformer_items(pipe.transformer, "model.diffusion_model."))
    else:
        unet_config = dict(pipe.unet.config)
        for key, value in pipe.unet.state_dict().items():
            tensors["model.diffusion_model." + ldm_unet_key(key, unet_config)] = value
    for key, value in pipe.vae.state_dict().items():
        name, value = ldm_vae_item(key, value, dict(pipe.vae.config))
        tensors["first_stage_model." + name] = value
    tensors.update(_text_encoder_items(family, pipe))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(checkpoint))
    target = configs_root / family
    for sub in kept.iterdir():
        if sub.is_dir() and not sub.name.startswith("tokenizer"):
            (target / sub.name).mkdir(parents=True, exist_ok=True)
            for config in sub.glob("*.json"):
                shutil.copy(config, target / sub.name / config.name)
    index = json.loads((kept / "model_index.json").read_text())
    (target / "model_index.json").write_text(json.dumps(index))
    (target / "tokenizers.json").write_text(json.dumps(TOKENIZERS[family]))
    if folder is None:
        shutil.rmtree(kept)
    return checkpoint


# --- ControlNets --


def build_controlnet(model_folder: Path, path: Path, seed: int = 0) -> Path:
    """A tiny random-weight ControlNet for the diffusers model at ``model_folder``, in the layout published
    ControlNets download in (``config.json`` and ``diffusion_pytorch_model.safetensors``).

    It is made as the published ones were, ``ControlNetModel.from_unet`` of the model's UNet (the UNet's
    weights copied, its zero convolutions added), its conditioning embedding shrinking the control image as
    much as the model's VAE shrinks images (the demo model's VAE 4×, the real families' 8×). The zero
    convolutions, which a trained ControlNet has learnt, get small random weights, so that it steers."""
    unet = UNet2DConditionModel.from_pretrained(str(model_folder / "unet"))
    vae_config = json.loads((model_folder / "vae" / "config.json").read_text())
    levels = len(vae_config["block_out_channels"])
    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16)[:levels])
    with torch.no_grad():
        zero = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
        zero.append(controlnet.controlnet_cond_embedding.conv_out)
        for module in zero:
            for parameter in module.parameters():
                parameter.normal_(0.0, 0.2)
    controlnet.save_pretrained(str(path), safe_serialization=True)
    return path


def build_flux_controlnet(model_folder: Path, path: Path, seed: int = 0) -> Path:
    """A tiny random-weight FLUX ControlNet for the FLUX folder at ``model_folder`` (``FluxControlNetModel
    .from_transformer``: one double and one single block of the transformer, which reads the VAE-encoded
    control image, as InstantX's published ones do), its zero-initialised output blocks given small random
    weights."""
    transformer = FluxTransformer2DModel.from_pretrained(str(model_folder / "transformer"))
    torch.manual_seed(seed)
    controlnet = FluxControlNetModel.from_transformer(
        transformer,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=transformer.config.attention_head_dim,
        num_attention_heads=transformer.config.num_attention_heads,
    )
    with torch.no_grad():
        for block in [*controlnet.controlnet_blocks, *controlnet.controlnet_single_blocks]:
            for parameter in block.parameters():
                parameter.normal_(0.0, 0.2)
    controlnet.save_pretrained(str(path), safe_serialization=True)
    return path


def build_dpt(path: Path, *, shard: bool = False) -> Path:
    """A tiny random-weight DPT (MiDaS's architecture) as published: config.json, model.safetensors (or shards
    with their index) and the DPT image processor's preprocessor_config.json."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessorPil

    torch.manual_seed(0)
    config = DPTConfig(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=32,
        patch_size=8,
        neck_hidden_sizes=[8, 8, 8, 8],
        fusion_hidden_size=8,
        backbone_out_indices=[0, 1, 2, 3],
        reassemble_factors=[4, 2, 1, 0.5],
        head_in_index=-1,
    )
    model = DPTForDepthEstimation(config)
    model.save_pretrained(str(path), safe_serialization=True, max_shard_size="20KB" if shard else "5GB")
    DPTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(str(path))
    return path
