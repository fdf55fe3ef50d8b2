"""CUDA-only code paths: device/dtype choice and timing with synchronisation. Runs where CUDA is present."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_cuda_is_chosen_in_half_precision():
    from generation.engine.pipelines import choose_device

    device, dtype = choose_device()
    assert device.type == "cuda"
    assert dtype == torch.float16


def test_a_job_runs_on_the_gpu_and_reproduces(demo_model_dir):
    from generation.engine import registry
    from generation.engine.runner import generate, text_request

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
