"""The family table and the shipped single-file configs: complete, parseable, and the published architectures;
checkpoints are told apart by their tensor names alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from generation import library
from generation.engine import families, pipelines
from studio.errors import InvalidInput

CONFIGS = pipelines.CONFIGS_DIR
SHIPPED = sorted(f.key for f in families.FAMILIES.values() if f.single_file)


def test_every_family_with_single_files_ships_its_configs():
    assert SHIPPED == ["sd1", "sd2", "sd3", "sdxl"]
    assert (
        sorted(p.name for p in CONFIGS.iterdir() if p.is_dir() and (p / "model_index.json").exists())
        == SHIPPED
    )


@pytest.mark.parametrize("family", SHIPPED)
def test_a_shipped_config_folder_is_complete_and_parses(family):
    import diffusers
    import transformers

    folder = CONFIGS / family
    index = json.loads((folder / "model_index.json").read_text())
    assert families.PIPELINE_CLASS_FAMILIES[index["_class_name"]] in (family, "sd1")
    tokenizers = json.loads((folder / "tokenizers.json").read_text())
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        library_name, class_name = spec
        if class_name == "CLIPTokenizer":
            assert name in tokenizers
            assert pipelines.clip_tokenizer(tokenizers[name]).pad_token == tokenizers[name]["pad_token"]
        elif library_name == "transformers":
            config = transformers.AutoConfig.from_pretrained(str(folder / name), local_files_only=True)
            assert type(config).__name__ == "CLIPTextConfig"
        else:
            cls = getattr(diffusers, class_name)
            config = cls.load_config(str(folder / name))
            assert config["_class_name"] == class_name


# Parameter counts of the published models' components.
PUBLISHED = {
    ("sd1", "unet"): 859_520_964,
    ("sd2", "unet"): 865_910_724,
    ("sdxl", "unet"): 2_567_463_684,
    ("sd3", "transformer"): 2_028_328_000,
    ("sd1", "text_encoder"): 123_060_480,
    ("sd2", "text_encoder"): 340_387_840,
    ("sdxl", "text_encoder_2"): 694_659_840,
    ("sd1", "vae"): 83_653_863,
}


@pytest.mark.parametrize(("family", "component"), sorted(PUBLISHED))
def test_the_shipped_configs_describe_the_published_architectures(family, component):
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    folder = CONFIGS / family
    _, class_name = json.loads((folder / "model_index.json").read_text())[component]
    with init_empty_weights():
        if class_name.startswith("CLIP"):
            config = transformers.CLIPTextConfig.from_pretrained(str(folder / component))
            model = getattr(transformers, class_name)(config)
        else:
            cls = getattr(diffusers, class_name)
            model = cls.from_config(cls.load_config(str(folder / component)))
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED[(family, component)]


def test_the_shipped_clip_vocabulary_tokenizes_like_clip():
    tokenizer = pipelines.clip_tokenizer({"pad_token": "<|endoftext|>"})
    assert len(tokenizer) == 49408
    ids = tokenizer("a photograph of an astronaut riding a horse").input_ids
    assert ids == [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]


def test_flow_matching_families_offer_only_flow_schedulers():
    for key in ("sd3", "flux"):
        family = families.FAMILIES[key]
        assert family.flow_matching
        assert set(family.schedulers) <= set(pipelines.FLOW_SCHEDULER_CLASSES)
        assert len(family.latent_rgb_factors) == 16
    assert pipelines.FLOW_SCHEDULER_CLASSES["Euler"][0].__name__ == "FlowMatchEulerDiscreteScheduler"


def test_flux_previews_unpack_its_latents():
    from diffusers import FluxPipeline

    class Loaded:
        pipe = type(
            "P", (), {"_unpack_latents": staticmethod(FluxPipeline._unpack_latents), "vae_scale_factor": 8}
        )

    # 64×64 px: 8×8 latents of 16 channels, packed as 4×4 tokens of 2×2 patches (64 values each).
    packed = torch.arange(16 * 64, dtype=torch.float32).reshape(1, 16, 64)
    unpacked = pipelines.preview_latents(Loaded(), packed, 64, 64)
    assert unpacked.shape == (1, 16, 8, 8)
    # Channel 1 at row 1, column 2: token (0, 1), patch position (1, 0).
    assert unpacked[0, 1, 1, 2] == packed[0, 1, 1 * 4 + 1 * 2 + 0]


def header_file(tmp_path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    path = tmp_path / "checkpoint.safetensors"
    save_file({k: torch.zeros(s) for k, s in shapes.items()}, str(path))
    return path


SD_PARTS = {"first_stage_model.encoder.conv_in.weight": (1,), "cond_stage_model.transformer.x": (1,)}


@pytest.mark.parametrize(
    ("shapes", "family"),
    [
        ({"model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3), **SD_PARTS}, "sd1"),
        (
            {
                "model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3),
                "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (8, 1024),
                **SD_PARTS,
            },
            "sd2",
        ),
        (
            {
                "model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3),
                "conditioner.embedders.0.transformer.x": (1,),
                "conditioner.embedders.1.model.x": (1,),
                "first_stage_model.x": (1,),
            },
            "sdxl",
        ),
    ],
)
def test_checkpoints_are_told_apart_by_their_tensor_names(tmp_path, shapes, family):
    header = library.read_safetensors_header(header_file(tmp_path, shapes))
    assert library.detect_checkpoint_family(header) == family
    library.check_single_file(header, family)


def test_single_files_that_cannot_run_offline_are_refused_with_the_reason(tmp_path):
    flux = library.read_safetensors_header(
        header_file(tmp_path, {"double_blocks.0.img_attn.qkv.weight": (2,)})
    )
    assert library.detect_checkpoint_family(flux) == "flux"
    with pytest.raises(InvalidInput, match="T5 text encoder"):
        library.check_single_file(flux, "flux")
    sd3 = library.read_safetensors_header(
        header_file(tmp_path, {"model.diffusion_model.joint_blocks.0.context_block.attn.qkv.weight": (2,)})
    )
    assert library.detect_checkpoint_family(sd3) == "sd3"
    with pytest.raises(InvalidInput, match="lacks its VAE and CLIP-L text encoder and CLIP-G text encoder"):
        library.check_single_file(sd3, "sd3")
    inpaint = library.read_safetensors_header(
        header_file(tmp_path, {"model.diffusion_model.input_blocks.0.0.weight": (8, 9, 3, 3)})
    )
    with pytest.raises(InvalidInput, match="Inpainting"):
        library.detect_checkpoint_family(inpaint)


def test_a_header_that_lies_about_its_tensors_is_refused(tmp_path):
    path = header_file(tmp_path, {"a": (4,)})
    raw = path.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    header["a"]["shape"] = [9]  # (same length: the header keeps its size)
    text = json.dumps(header, separators=(",", ":")).encode().ljust(header_len)
    path.write_bytes(raw[:8] + text + raw[8 + header_len :])
    with pytest.raises(InvalidInput, match="corrupt"):
        library.read_safetensors_header(path)
