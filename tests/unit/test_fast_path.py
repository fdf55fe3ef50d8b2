"""On a GPU each model family runs in its own precision with its own options (the fast path); a model's
studio.json and the environment can change them; the CPU always runs fp32, eager.

The CUDA device is asked about, not used: what the worker would choose there is a plain function of the
model, its family and the settings. Where a pipeline is set up for the fast path, that runs on the CPU with
a tiny model of the family."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from PIL import Image

from generation.engine import pipelines, registry
from generation.engine.pipelines import (
    COMPILE_MODE,
    CUDA_GRAPHS_COMPILE_MODE,
    Acceleration,
    LoadedModel,
    fast_path,
    warm_shape,
)
from generation.engine.registry import ModelInfo, RegistryError
from tests import library_models

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


def model(family: str, **studio_json) -> ModelInfo:
    return ModelInfo(
        id=f"a-{family}-model",
        name=family,
        family=family,
        path=Path("/models") / family,
        default_width=512,
        default_height=512,
        default_steps=30,
        default_guidance=7.5,
        default_scheduler="Euler",
        min_size=256,
        max_size=1024,
        schedulers=["Euler"],
        modes=["txt2img"],
        meta=studio_json,
    )


# --- the precision --


@pytest.mark.parametrize(
    ("family", "dtype", "vae_upcast"),
    [
        ("flux", torch.bfloat16, False),  # fp16 overflows in FLUX's transformer and T5
        ("sdxl", torch.float16, True),  # ... and in the SDXL VAE
        ("sd3", torch.float16, True),
        ("sd1", torch.float16, False),
        ("sd2", torch.float16, False),
        ("demo", torch.float16, False),
    ],
)
def test_each_family_has_its_precision_on_a_gpu(family, dtype, vae_upcast):
    chosen = fast_path(model(family), CUDA)
    assert chosen.dtype == dtype
    assert chosen.vae_upcast is vae_upcast
    assert chosen.sdpa is True
    assert chosen.channels_last is True


@pytest.mark.parametrize("family", ["flux", "sdxl", "sd3", "sd1", "demo"])
def test_the_cpu_always_runs_fp32_as_loaded(family, settings):
    settings.STUDIO_DTYPE = "bf16"
    settings.STUDIO_TORCH_COMPILE = True
    assert fast_path(model(family, dtype="fp16", torch_compile=True), CPU) == Acceleration()
    assert Acceleration().describe() == "fp32"


def test_choose_device_takes_cuda_when_present_in_the_familys_precision(monkeypatch):
    monkeypatch.delenv("STUDIO_DEVICE", raising=False)
    with mock.patch.object(torch.cuda, "is_available", return_value=True):
        assert pipelines.choose_device(model("flux")) == (CUDA, torch.bfloat16)
        assert pipelines.choose_device(model("sdxl")) == (CUDA, torch.float16)
        assert pipelines.choose_device() == (CUDA, torch.float16)
        monkeypatch.setenv("STUDIO_DEVICE", "cpu")
        assert pipelines.choose_device(model("flux")) == (CPU, torch.float32)


def test_studio_json_chooses_the_precision_over_the_family_and_the_environment(settings):
    assert fast_path(model("sdxl", dtype="fp32"), CUDA).dtype == torch.float32
    assert fast_path(model("sd1", dtype="bf16"), CUDA).dtype == torch.bfloat16
    settings.STUDIO_DTYPE = "fp32"
    assert fast_path(model("sd1", dtype="fp16"), CUDA).dtype == torch.float16
    assert (
        fast_path(model("flux"), CUDA).dtype == torch.float32
    )  # the environment, where studio.json is silent


def test_a_vae_in_bf16_or_fp32_is_not_upcast(settings):
    settings.STUDIO_DTYPE = "bf16"
    assert fast_path(model("sdxl"), CUDA) == Acceleration(torch.bfloat16, False, True, True, None)
    settings.STUDIO_DTYPE = ""
    assert fast_path(model("sdxl", vae_upcast=False), CUDA).vae_upcast is False  # e.g. an fp16-safe VAE
    assert fast_path(model("sdxl", dtype="fp32"), CUDA).vae_upcast is False


def test_channels_last_is_the_familys_unless_the_environment_or_studio_json_says(settings):
    settings.STUDIO_CHANNELS_LAST = False
    assert fast_path(model("sdxl"), CUDA).channels_last is False
    assert fast_path(model("sdxl", channels_last=True), CUDA).channels_last is True
    settings.STUDIO_CHANNELS_LAST = None
    assert fast_path(model("sdxl", channels_last=False), CUDA).channels_last is False


def test_the_fast_path_reads_in_words():
    assert fast_path(model("sdxl"), CUDA).describe() == "fp16, VAE in fp32, channels-last, SDPA attention"


# --- torch.compile --


def test_torch_compile_is_off_by_default_and_never_on_the_cpu(settings):
    assert settings.STUDIO_TORCH_COMPILE is False
    assert fast_path(model("sdxl"), CUDA).compile_mode is None
    settings.STUDIO_TORCH_COMPILE = True
    assert fast_path(model("sdxl"), CUDA).compile_mode == COMPILE_MODE == "max-autotune-no-cudagraphs"
    assert fast_path(model("sdxl"), CPU).compile_mode is None
    settings.STUDIO_CUDA_GRAPHS = True
    assert fast_path(model("sdxl"), CUDA).compile_mode == CUDA_GRAPHS_COMPILE_MODE == "reduce-overhead"
    assert fast_path(model("sdxl", torch_compile=False), CUDA).compile_mode is None
    settings.STUDIO_TORCH_COMPILE = False
    assert fast_path(model("sdxl", torch_compile=True), CUDA).compile_mode == "reduce-overhead"


def test_a_model_loaded_on_the_cpu_is_never_compiled(settings, demo_model_dir):
    settings.STUDIO_TORCH_COMPILE = True
    info = registry.load_model_info(demo_model_dir, "demo")
    loaded = pipelines.load(info, CPU)
    assert loaded.dtype == torch.float32
    assert loaded.pipe.unet._compiled_call_impl is None  # what nn.Module.compile() sets
    assert warm_shape(loaded, 64, 64, 1) is False


def compiled_stand_in(**pipe_call) -> LoadedModel:
    pipe = mock.Mock(name="pipe", **pipe_call)
    options = Acceleration(torch.float16, False, True, True, COMPILE_MODE)
    return LoadedModel(model("sdxl"), pipe, "0" * 64, CUDA, torch.float16, None, fast_path=options)


def test_warm_shape_runs_the_model_once_per_new_shape():
    loaded = compiled_stand_in()
    assert warm_shape(loaded, 1024, 1024, 4) is True
    assert warm_shape(loaded, 1024, 1024, 4) is False
    assert loaded.pipe.call_count == 1
    kwargs = loaded.pipe.call_args.kwargs
    assert (kwargs["width"], kwargs["height"], kwargs["num_images_per_prompt"]) == (1024, 1024, 4)
    assert kwargs["num_inference_steps"] == pipelines.WARM_UP_STEPS
    assert kwargs["guidance_scale"] == 7.5  # classifier-free guidance on, as jobs run it
    assert kwargs["output_type"] == "latent"

    assert warm_shape(loaded, 1024, 1024, 1) is True  # another batch size is another shape
    assert warm_shape(loaded, 832, 1216, 4) is True
    assert warm_shape(loaded, 1024, 1024, 1) is False
    assert loaded.pipe.call_count == 3
    assert loaded.warmed == {(1024, 1024, 4), (1024, 1024, 1), (832, 1216, 4)}


def test_warm_shape_never_runs_an_eager_model():
    loaded = dataclasses.replace(compiled_stand_in(), fast_path=Acceleration(torch.float16))
    assert warm_shape(loaded, 1024, 1024, 4) is False
    assert loaded.pipe.call_count == 0


def test_a_failed_warm_up_is_not_recorded():
    loaded = compiled_stand_in(side_effect=RuntimeError("the compiler failed"))
    with pytest.raises(RuntimeError):
        warm_shape(loaded, 512, 512, 1)
    assert loaded.warmed == set()


# --- a pipeline set up for the fast path --


@pytest.mark.parametrize("family", ["sdxl", "sd3"])
def test_an_upcast_vae_stays_in_fp32_and_the_images_come_out(family):
    """bf16 stands in for fp16 here (the CPU runs both; bf16 everywhere)."""
    pipe = library_models.tiny_pipeline(family).to(torch.bfloat16)
    options = Acceleration(torch.bfloat16, vae_upcast=True, channels_last=True, sdpa=True)
    pipelines.accelerate(pipe, options)
    pipe.set_progress_bar_config(disable=True)
    denoiser = pipelines.denoiser(pipe)
    assert denoiser is not None
    assert denoiser.dtype == torch.bfloat16
    assert pipe.vae.dtype == torch.float32
    assert pipe.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(isinstance(p, AttnProcessor2_0) for p in pipe.vae.attn_processors.values())

    with torch.inference_mode():
        image = pipe(
            prompt="a red circle", num_inference_steps=2, width=64, height=64, output_type="np"
        ).images
    assert image.shape == (1, 64, 64, 3)
    assert np.isfinite(image).all()

    img2img = pipelines.mode_pipeline(
        LoadedModel(model(family), pipe, "", CPU, torch.bfloat16, None), "img2img"
    )
    with torch.inference_mode():
        changed = img2img(
            prompt="a red circle",
            image=Image.new("RGB", (64, 64), "blue"),
            strength=0.6,
            num_inference_steps=3,
            output_type="np",
        ).images
    assert np.isfinite(changed).all()
    assert pipe.vae.dtype == torch.float32  # the pipelines' own upcast would have cast it back down


def test_a_unets_convolutions_go_channels_last_with_sdpa_attention():
    pipe = library_models.tiny_pipeline("sd1")
    pipelines.accelerate(pipe, Acceleration(torch.float32, channels_last=True, sdpa=True))
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(isinstance(p, AttnProcessor2_0) for p in pipe.unet.attn_processors.values())
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        image = pipe(
            prompt="a red circle", num_inference_steps=2, width=64, height=64, output_type="np"
        ).images
    assert np.isfinite(image).all()


# --- studio.json --


@pytest.mark.parametrize(
    ("studio_json", "error"),
    [
        ({"dtype": "fp8"}, "dtype in studio.json must be one of fp16, bf16, fp32"),
        ({"channels_last": "yes"}, "channels_last in studio.json must be true or false"),
        ({"torch_compile": 1}, "torch_compile in studio.json must be true or false"),
    ],
)
def test_a_studio_json_asking_for_an_unknown_option_is_refused(tmp_path, studio_json, error):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    (folder / "studio.json").write_text(json.dumps(studio_json))
    with pytest.raises(RegistryError, match=error):
        registry.load_model_info(folder)
    (folder / "studio.json").write_text(json.dumps({"dtype": "bf16", "torch_compile": True}))
    assert fast_path(registry.load_model_info(folder), CUDA).dtype == torch.bfloat16


def test_a_model_read_for_the_gpu_reads_an_upcast_vae_in_fp32(tmp_path, monkeypatch):
    """What ``load`` does for an SDXL model bound for a GPU, on the CPU: bf16 stands in for fp16."""
    folder = library_models.build_folder("sdxl", tmp_path / "tiny-sdxl")
    info = registry.load_model_info(folder, "tiny-sdxl")
    options = Acceleration(torch.bfloat16, vae_upcast=True, channels_last=True, sdpa=True)
    monkeypatch.setattr(pipelines, "fast_path", lambda info, device: options)
    loaded = pipelines.load(info, CPU)
    assert loaded.fast_path == options
    assert loaded.dtype == torch.bfloat16
    assert loaded.pipe.unet.dtype == torch.bfloat16
    assert loaded.pipe.text_encoder_2.dtype == torch.bfloat16
    assert loaded.pipe.vae.dtype == torch.float32
    assert loaded.pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = loaded.pipe(prompt="a red circle", num_inference_steps=2, width=64, height=64, output_type="np")
    assert out.images.shape == (1, 64, 64, 3)
    assert np.isfinite(out.images).all()
