"""Every scheduler a family lists samples with that family's tiny model: two steps of text to image through
the engine, with the scheduler the name stands for; progress counts the steps the job announced."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from generation.engine import pipelines, registry, runner
from generation.engine.families import FAMILIES
from tests import library_models

SIZE = 64
CASES = [
    (family, scheduler)
    for family in ("sd1", "sd2", "sdxl", "sd3", "flux")
    for scheduler in FAMILIES[family].schedulers
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Iterator[Callable[[str], registry.ModelInfo]]:
    """``tiny_model(family)``: the family's tiny diffusers folder, built once per module, as the registry
    reads it; the pipelines stay loaded meanwhile."""
    root = tmp_path_factory.mktemp("family-schedulers")
    kept = runner._cache
    runner._cache = pipelines.PipelineCache()

    def get(family: str) -> registry.ModelInfo:
        folder = root / family
        if not folder.exists():
            library_models.build_folder(family, folder)
        return registry.load_model_info(Path(folder), f"tiny-{family}")

    yield get
    runner._cache = kept


class Steps:
    def __init__(self) -> None:
        self.steps: list[tuple[int, int]] = []

    def on_step(self, step: int, total: int) -> None:
        self.steps.append((step, total))

    def wants_preview(self, step: int, total: int) -> bool:
        return False

    def on_preview(self, step: int, total: int, rgb: np.ndarray) -> None:
        raise AssertionError("no previews were asked for")

    def should_cancel(self) -> bool:
        return False


def request(
    model: registry.ModelInfo, scheduler: str, steps: int, init_image: Any = None, **mode: Any
) -> runner.GenerationRequest:
    made = runner.text_request(
        model,
        "a red circle",
        width=SIZE,
        height=SIZE,
        steps=steps,
        guidance_scale=4.0,
        seed=5,
        scheduler=scheduler,
        **mode,
    )
    return runner.GenerationRequest(model, made.params, init_image=init_image)


@pytest.mark.parametrize(("family", "scheduler"), CASES, ids=[f"{f}-{s}" for f, s in CASES])
def test_each_listed_scheduler_samples_two_steps(tiny_model, family, scheduler):
    model = tiny_model(family)
    assert scheduler in model.schedulers
    hooks = Steps()
    result = runner.generate(request(model, scheduler, 2), hooks)

    loaded = runner.cache().get(model)
    classes = pipelines.FLOW_SCHEDULER_CLASSES if model.flow_matching else pipelines.SCHEDULER_CLASSES
    cls, options = classes[scheduler]
    assert type(loaded.pipe.scheduler) is cls
    assert all(loaded.pipe.scheduler.config[key] == value for key, value in options.items())
    assert not result.canceled
    [image] = result.images
    assert image.size == (SIZE, SIZE)
    assert np.asarray(image.convert("RGB")).std() > 0
    # Progress counts the two steps asked for, once each, whatever the scheduler's number of model calls
    # (Heun evaluates twice per step but the last, PNDM's warm-up evaluates its first step twice).
    assert hooks.steps == [(1, 2), (2, 2)]
    assert loaded.pipe.num_timesteps == (3 if scheduler in ("Heun", "PNDM") else 2)


@pytest.mark.parametrize("scheduler", ["Heun", "PNDM", "Euler"])
def test_progress_counts_the_steps_the_job_announced_in_every_mode(tiny_model, scheduler):
    from PIL import Image

    from generation.schemas import JobParams

    model = tiny_model("sd1")
    start = Image.new("RGB", (SIZE, SIZE), (200, 40, 40))
    for steps, strength in ((5, None), (10, 0.5), (7, 0.3)):
        hooks = Steps()
        mode = "img2img" if strength else "txt2img"
        runner.generate(
            request(
                model, scheduler, steps, init_image=start if strength else None, strength=strength, mode=mode
            ),
            hooks,
        )
        announced = JobParams(
            prompt="x",
            width=8,
            height=8,
            steps=steps,
            guidance_scale=1,
            seed=1,
            scheduler="Euler",
            strength=strength,
            mode=mode,
        ).planned_steps()
        assert hooks.steps == [(step, announced) for step in range(1, announced + 1)], (steps, strength)
