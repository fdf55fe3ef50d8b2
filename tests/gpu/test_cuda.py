"""CUDA-only code paths: device/dtype choice, each family's fast path, the two tiers of the pipeline cache,
torch.compile's warm-up, asynchronous previews and timing with synchronisation. Runs where CUDA is present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


class Hooks:
    steps = 0

    def on_step(self, step, total):
        self.steps = step

    def wants_preview(self, step, total):
        return True

    def on_preview(self, step, total, rgb):
        assert rgb.shape[-1] == 3

    def should_cancel(self):
        return False


def family_model(family: str, **studio_json):
    from generation.engine.registry import ModelInfo

    return ModelInfo(
        id=f"a-{family}-model",
        name=family,
        family=family,
        path=Path("/models") / family,
        default_width=1024,
        default_height=1024,
        default_steps=30,
        default_guidance=6.0,
        default_scheduler="Euler",
        min_size=512,
        max_size=2048,
        schedulers=["Euler"],
        modes=["txt2img"],
        meta=studio_json,
    )


def test_cuda_is_chosen_in_half_precision():
    from generation.engine.pipelines import choose_device

    device, dtype = choose_device()
    assert device.type == "cuda"
    assert dtype == torch.float16


@pytest.mark.parametrize(
    ("family", "dtype", "vae_upcast"),
    [
        ("flux", torch.bfloat16, False),
        ("sdxl", torch.float16, True),
        ("sd3", torch.float16, True),
        ("sd1", torch.float16, False),
        ("sd2", torch.float16, False),
    ],
)
def test_each_family_gets_its_precision_on_this_gpu(family, dtype, vae_upcast):
    from generation.engine import pipelines

    device, chosen = pipelines.choose_device(family_model(family))
    assert (device.type, chosen) == ("cuda", dtype)
    options = pipelines.fast_path(family_model(family), device)
    assert options.vae_upcast is vae_upcast
    assert options.channels_last is True
    assert options.sdpa is True
    assert options.compile_mode is None
    assert pipelines.choose_device(family_model(family, dtype="fp32")) == (device, torch.float32)


def test_a_job_runs_on_the_gpu_and_reproduces(demo_model_dir):
    from generation.engine import registry
    from generation.engine.runner import generate, text_request

    model = registry.get_model("demo")
    request = text_request(
        model,
        "a red circle",
        width=64,
        height=64,
        steps=20,
        guidance_scale=5.0,
        seed=11,
        scheduler="Euler",
        num_images=2,
    )
    first, second = generate(request, Hooks()), generate(request, Hooks())
    assert first.device.startswith("cuda")
    assert [im.tobytes() for im in first.images] == [im.tobytes() for im in second.images]


def test_an_sdxl_size_model_runs_in_fp16_channels_last_with_sdpa_and_finite_images(random_models):
    from diffusers.models.attention_processor import AttnProcessor2_0

    from generation.engine import pipelines, registry

    folder, _ = random_models
    info = registry.load_model_info(folder("sdxl"), "random-sdxl")
    cache = pipelines.PipelineCache()
    try:
        loaded = cache.get(info)
        pipe = loaded.pipe
        assert loaded.device.type == "cuda"
        assert loaded.dtype == torch.float16
        assert pipe.unet.dtype == torch.float16
        assert pipe.text_encoder_2.dtype == torch.float16
        assert pipe.vae.dtype == torch.float32  # the SDXL VAE overflows in fp16
        assert pipe.unet.device.type == "cuda"
        assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        assert pipe.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        for module in (pipe.unet, pipe.vae):
            assert all(isinstance(p, AttnProcessor2_0) for p in module.attn_processors.values())
        assert cache.tiers()["random-sdxl"].tier == pipelines.GPU
        assert cache.tiers()["random-sdxl"].bytes > 5 * 2**30  # 2.6 G UNet parameters in fp16, and the rest

        with torch.inference_mode():
            images = pipe(
                prompt="a lighthouse on a cliff at dusk",
                num_inference_steps=4,
                width=1024,
                height=1024,
                num_images_per_prompt=2,
                generator=[torch.Generator("cpu").manual_seed(s) for s in (1, 2)],
                output_type="np",
            ).images
        assert images.shape == (2, 1024, 1024, 3)
        assert np.isfinite(images).all()
        assert images.std() > 0
    finally:
        cache.clear()
        torch.cuda.empty_cache()


def test_a_flux_model_runs_in_bf16_with_finite_images(tmp_path):
    """bench/gpu_modes.py builds no full-size FLUX (the studio ships no FLUX configs): a tiny one, in FLUX's
    real layout, shows the family loads in bf16 and samples on the GPU."""
    from generation.engine import pipelines, registry
    from tests import library_models

    folder = library_models.build_folder("flux", tmp_path / "tiny-flux")
    info = registry.load_model_info(folder, "tiny-flux")
    cache = pipelines.PipelineCache()
    try:
        loaded = cache.get(info)
        assert loaded.dtype == torch.bfloat16
        assert loaded.pipe.transformer.dtype == torch.bfloat16
        assert loaded.pipe.text_encoder_2.dtype == torch.bfloat16  # T5
        assert loaded.pipe.vae.dtype == torch.bfloat16  # (bf16 has fp32's range: no upcast)
        with torch.inference_mode():
            images = loaded.pipe(
                prompt="a red circle", num_inference_steps=2, width=64, height=64, output_type="np"
            ).images
        assert np.isfinite(images).all()
    finally:
        cache.clear()


def test_a_model_moved_to_host_memory_and_back_makes_the_same_image(demo_model_dir, tmp_path, caplog):
    import logging

    from generation.engine import pipelines, registry
    from tests import library_models

    caplog.set_level(logging.INFO, logger="generation.engine.pipelines")
    demo = registry.get_model("demo")
    other = registry.load_model_info(library_models.build_folder("sd1", tmp_path / "tiny-sd1"), "tiny-sd1")
    cache = pipelines.PipelineCache(gpu_budget=1, host_budget=2**40)  # room for one model at a time

    def image(loaded):
        with torch.inference_mode():
            return loaded.pipe(
                prompt="a red circle",
                num_inference_steps=8,
                width=64,
                height=64,
                generator=[torch.Generator("cpu").manual_seed(3)],
                output_type="np",
            ).images

    try:
        first = image(cache.get(demo))
        cache.get(other)
        assert cache.tiers()["demo"].tier == pipelines.HOST
        assert next(cache.get(other).pipe.unet.parameters()).device.type == "cuda"
        back = cache.get(demo)
        assert next(back.pipe.unet.parameters()).device.type == "cuda"
        assert cache.tiers()["tiny-sd1"].tier == pipelines.HOST
        np.testing.assert_array_equal(image(back), first)
        assert "Moving model demo to host memory" in caplog.messages
        assert "Moving model demo back to cuda" in caplog.messages
        assert [m for m in caplog.messages if m.startswith("Loading model demo")] == [
            f"Loading model demo from {demo.path}"
        ]
    finally:
        cache.clear()


def test_a_compiled_model_warms_each_shape_once_and_a_job_there_compiles_nothing(
    settings, monkeypatch, demo_model_dir
):
    """torch.compile's default mode stands in for max-autotune (which would autotune for minutes): what is
    checked is the warm-up's bookkeeping, the same whatever the mode."""
    from torch._dynamo.utils import counters

    from generation.engine import pipelines, registry

    settings.STUDIO_TORCH_COMPILE = True
    monkeypatch.setattr(pipelines, "COMPILE_MODE", "default")
    demo = registry.get_model("demo")
    cache = pipelines.PipelineCache()
    try:
        loaded = cache.get(demo)
        assert loaded.fast_path.compile_mode == "default"
        assert loaded.pipe.unet._compiled_call_impl is not None
        assert pipelines.warm_shape(loaded, 64, 64, 2) is True
        assert pipelines.warm_shape(loaded, 64, 64, 2) is False
        graphs = counters["stats"]["unique_graphs"]
        assert graphs > 0
        with torch.inference_mode():
            images = loaded.pipe(
                prompt="a red circle",
                num_inference_steps=6,
                width=64,
                height=64,
                num_images_per_prompt=2,
                guidance_scale=demo.default_guidance,
                generator=[torch.Generator("cpu").manual_seed(s) for s in (1, 2)],
                output_type="np",
            ).images
        assert counters["stats"]["unique_graphs"] == graphs  # nothing compiled during the "job"
        assert np.isfinite(images).all()
        assert pipelines.warm_shape(loaded, 64, 64, 1) is True  # a new batch size is a new shape
    finally:
        cache.clear()
        torch._dynamo.reset()


def test_gpu_previews_show_a_step_already_drawn_and_never_a_half_copied_one():
    from generation.engine.families import SD_LATENT_RGB_FACTORS
    from generation.engine.preview import Previewer, latent_projector, latents_to_rgb

    factors, bias = latent_projector(SD_LATENT_RGB_FACTORS, None, 4)
    previewer = Previewer(factors, bias)
    latents = [torch.randn(1, 4, 128, 128, device="cuda", dtype=torch.float16) for _ in range(8)]
    expected = [latents_to_rgb(lat[0], factors, bias).astype(int) for lat in latents]
    shown = [previewer(lat).astype(int) for lat in latents]

    def same(a, b):  # (the GPU's and the CPU's float sums may round one pixel value apart)
        return a.shape == b.shape and np.abs(a - b).max() <= 1

    assert same(shown[0], expected[0])  # the first preview is its own step's
    for i, image in enumerate(shown):
        assert any(same(image, expected[j]) for j in range(i + 1)), i
    torch.cuda.synchronize()
