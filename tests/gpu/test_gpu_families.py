"""SD 1.5-size and SDXL-size models on the GPU: random weights in the full published architectures (built from
the component configs the studio ships), installed through the model library, and every generation mode run
through the worker in half precision, with progress and previews arriving and the images stored. Then a
TAESD-size tiny decoder is installed for the family and the previews come from it at the image's size.

Runs where CUDA is present; skips elsewhere. Building the random SDXL weights is the slow part (once per
family)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.django_db(transaction=True),
]

STEPS = 4


@dataclass(frozen=True)
class Case:
    family: str
    size: int  # txt2img, img2img, inpainting and variations
    upscale_from: int  # the ×2 upscale's start image
    min_unet_parameters: float  # the published UNet's size, roughly: proof the architecture is full size


CASES = {
    "sd1": Case("sd1", 512, 256, 0.85e9),
    "sdxl": Case("sdxl", 1024, 512, 2.5e9),
}


@pytest.fixture
def built(random_models):
    """Random-weight fp16 diffusers folders of each family, built on the GPU once a session."""
    return random_models


@pytest.fixture
def models_dir(models_dir):
    """The shared empty models dir, and the GPU's pipeline cache emptied after each test."""
    from generation.engine import runner

    yield models_dir
    runner.cache().clear()
    torch.cuda.empty_cache()


@pytest.fixture
def seen(monkeypatch) -> dict[str, list[Any]]:
    """Every step and preview the diffusion loop hands the job's monitor."""
    from generation.worker import JobMonitor

    record: dict[str, list[Any]] = {"steps": [], "previews": []}
    on_step, on_preview = JobMonitor.on_step, JobMonitor.on_preview

    def step(self, step, total):
        record["steps"].append((step, total))
        on_step(self, step, total)

    def preview(self, step, total, rgb):
        record["previews"].append(rgb.shape)
        on_preview(self, step, total, rgb)

    monkeypatch.setattr(JobMonitor, "on_step", step)
    monkeypatch.setattr(JobMonitor, "on_preview", preview)
    return record


def mask_url(size: int) -> str:
    """The left third white (repaint), the rest black."""
    from PIL import Image, ImageDraw

    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rectangle([0, 0, size // 3, size], fill=255)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def run(team, seen, body: dict[str, Any], size: int):
    """One job through the worker; checks its steps, previews and stored image, and returns its asset."""
    from PIL import Image

    from gallery.models import Asset
    from generation import services
    from generation.schemas import JobParams
    from generation.tasks import run_job

    seen["steps"].clear()
    seen["previews"].clear()
    job = services.do_create_job(team["bob"], team["project"], {"prompt": "a lighthouse", "seed": 5, **body})
    assert run_job(str(job.id)) == "succeeded", job.id
    job.refresh_from_db()
    total = JobParams.model_validate(job.params).planned_steps()
    assert seen["steps"] == [(i, total) for i in range(1, total + 1)], body.get("mode", "txt2img")
    assert seen["previews"], f"no preview arrived ({body.get('mode', 'txt2img')})"
    assert job.gpu_seconds > 0
    asset = Asset.objects.get(job=job)
    assert (asset.width, asset.height) == (size, size)
    with asset.file.open("rb") as fh:
        image = Image.open(io.BytesIO(fh.read()))
        image.load()
    assert image.size == (size, size)
    return asset


@pytest.mark.parametrize("family", list(CASES))
def test_every_mode_runs_in_half_precision_through_the_worker(team, models_dir, built, seen, family):
    from gallery.models import Asset
    from generation import library
    from generation.engine import pipelines, registry, runner
    from tests import factories

    case = CASES[family]
    folder, decoder = built
    installed = library.do_install_model(team["root"], str(folder(family)), name=f"Random {family}")
    model = registry.get_model(installed.id)
    assert model is not None
    assert model.family == family
    loaded = runner.cache().get(model)
    assert loaded.device.type == "cuda"
    assert loaded.dtype == torch.float16
    assert loaded.pipe.unet.dtype == torch.float16
    assert loaded.pipe.text_encoder.dtype == torch.float16
    assert sum(p.numel() for p in loaded.pipe.unet.parameters()) > case.min_unet_parameters

    size, latent = case.size, case.size // 8
    base = {"model": model.id, "steps": STEPS}
    first = run(team, seen, {**base, "width": size, "height": size}, size)
    assert set(seen["previews"]) == {(latent, latent, 3)}  # the family's latent colour factors
    assert first.model_sha256 == installed.sha256

    start = {**base, "init_asset": str(first.id)}
    for body in (
        {**start, "mode": "img2img", "strength": 0.75},
        {**start, "mode": "inpaint", "mask": mask_url(size)},
        {**start, "mode": "variation", "variation": "strong"},
    ):
        child = run(team, seen, body, size)
        assert child.parent_id == first.id
    for kind in ("img2img", "inpaint"):
        assert pipelines.mode_pipeline(loaded, kind).unet.dtype == torch.float16

    small = factories.asset(team["project"], team["bob"], size=case.upscale_from)
    upscaled = run(team, seen, {**base, "mode": "upscale", "init_asset": str(small.id), "scale": 2}, size)
    assert upscaled.parent_id == small.id
    assert Asset.objects.filter(model_id=model.id).count() == 5

    # A TAESD-size tiny decoder for the family: previews are then the decoded picture, at the image's size.
    library.do_install_preview_decoder(team["root"], str(decoder()), family)
    run(team, seen, {**base, "width": size, "height": size}, size)
    assert set(seen["previews"]) == {(size, size, 3)}
    tiny = pipelines.preview_decoder(loaded)
    assert tiny is not None
    assert tiny.device.type == "cuda"
    assert tiny.dtype == torch.float16
