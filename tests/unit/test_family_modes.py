"""Every generation mode for every model family, from each family's real layouts: a tiny random-weight model
is installed from its diffusers folder (all families) and from its single-file checkpoint (SD1, SD2, SDXL,
SD3), then each mode runs as a job through the worker to a stored asset of the right size that records where
it came from; the single file makes what its diffusers folder makes."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from PIL import Image, ImageDraw

from gallery.models import Asset
from generation import library, services
from generation.engine import pipelines, registry, runner
from generation.engine.families import FAMILIES
from generation.models import Job
from generation.tasks import run_job
from generation.worker import JobMonitor
from studio.errors import InvalidInput
from tests import factories, library_models

pytestmark = pytest.mark.django_db(transaction=True)

SIZE = 64  # px: a multiple of 16, as SD3 and FLUX need
STEPS = 4  # the fewest for which the weakest mode (a subtle variation: strength 0.3) still repaints a step
LAYOUTS = [(family, "folder") for family in ("sd1", "sd2", "sdxl", "sd3", "flux")] + [
    (family, "single_file") for family in ("sd1", "sd2", "sdxl", "sd3")
]
MODES = ["txt2img", "img2img", "inpaint", "outpaint", "variation", "upscale"]
MASK_BOX = (0, 0, 24, SIZE)  # the left 24 columns are repainted


@pytest.fixture(scope="module")
def models_root(tmp_path_factory) -> Iterator[Path]:
    """One models dir for the module (each model is built and installed once), and a pipeline cache that
    keeps all of them warm meanwhile."""
    root = tmp_path_factory.mktemp("family-modes")
    kept = runner._cache
    runner._cache = pipelines.PipelineCache()
    yield root
    runner._cache = kept


@pytest.fixture
def installed(team, settings, monkeypatch, models_root) -> Callable[[str, str], registry.ModelInfo]:
    """``installed(family, layout)``: the family's tiny model in that layout, built and installed through the
    library the first time it is asked for. Its size limits are opened down to the tiny test size."""
    settings.MODELS_DIR = models_root / "models"
    monkeypatch.setattr(pipelines, "CONFIGS_DIR", models_root / "configs")
    monkeypatch.setattr(services, "enqueue", lambda job_id, queue: None)
    cache.clear()

    def get(family: str, layout: str) -> registry.ModelInfo:
        model_id = f"tiny-{family}-{layout.replace('_', '-')}"
        if registry.get_model(model_id) is None:
            source = build(models_root, family, layout)
            result = library.do_install_model(team["root"], str(source), name=model_id)
            assert result.id == model_id
            meta_path = settings.MODELS_DIR / model_id / "studio.json"
            meta = json.loads(meta_path.read_text())
            assert (meta["family"], meta["format"]) == (family, "diffusers" if layout == "folder" else layout)
            meta_path.write_text(json.dumps({**meta, "min_size": SIZE}))
        info = registry.get_model(model_id)
        assert info is not None
        assert info.family == family
        assert (info.checkpoint is not None) == (layout == "single_file")
        return info

    return get


def build(root: Path, family: str, layout: str) -> Path:
    """The family's tiny model in ``layout`` under ``root``. The single file is built with the diffusers
    folder of the same weights beside it (``<family>-same``: for SD3 without T5, as its single file comes)."""
    if layout == "single_file" or (family in ("sd1", "sd2", "sdxl") and layout == "folder"):
        checkpoint = root / f"{family}.safetensors"
        if not checkpoint.exists():
            library_models.build_single_file(
                checkpoint, root / "configs", family=family, folder=root / f"{family}-same"
            )
        return checkpoint if layout == "single_file" else root / f"{family}-same"
    if layout == "same_weights":
        build(root, family, "single_file")
        return root / f"{family}-same"
    folder = root / family
    if not folder.exists():
        library_models.build_folder(family, folder)
    return folder


@pytest.fixture
def seen(monkeypatch) -> dict[str, list]:
    """The steps and previews the diffusion loop reports to the worker."""
    seen: dict[str, list] = {"steps": [], "previews": []}
    on_step, on_preview = JobMonitor.on_step, JobMonitor.on_preview

    def record_step(self, step, total):
        seen["steps"].append((step, total))
        on_step(self, step, total)

    def record_preview(self, step, total, rgb):
        seen["previews"].append(rgb)
        on_preview(self, step, total, rgb)

    monkeypatch.setattr(JobMonitor, "on_step", record_step)
    monkeypatch.setattr(JobMonitor, "on_preview", record_preview)
    return seen


def start_image(team) -> Asset:
    """Bob's stored SIZE × SIZE picture: left half red, right half blue."""
    asset = factories.asset(team["project"], team["bob"], prompt="a blue square", size=SIZE)
    image = Image.new("RGB", (SIZE, SIZE), (200, 40, 40))
    ImageDraw.Draw(image).rectangle([SIZE // 2, 0, SIZE, SIZE], fill=(30, 60, 220))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    asset.file.save(f"{asset.id}.png", ContentFile(buffer.getvalue()), save=False)
    asset.width = asset.height = SIZE
    asset.save()
    return asset


def mask_url() -> str:
    mask = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(mask).rectangle(MASK_BOX, fill=255)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def pixels(field) -> Image.Image:
    with field.open("rb") as fh:
        image = Image.open(io.BytesIO(fh.read()))
        image.load()
    return image


def run(team, body: dict) -> tuple[Job, Asset]:
    job = services.do_create_job(team["bob"], team["project"], {"prompt": "a red circle", "seed": 3, **body})
    outcome = run_job(str(job.id))
    job.refresh_from_db()
    assert outcome == "succeeded", job.error
    return job, Asset.objects.get(job=job)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("family", "layout"), LAYOUTS, ids=[f"{f}-{layout}" for f, layout in LAYOUTS])
def test_each_mode_of_each_family_makes_a_stored_image(team, installed, seen, family, layout, mode):
    model = installed(family, layout)
    assert mode in model.modes
    body: dict = {"model": model.id, "mode": mode, "steps": STEPS}
    start = None
    if mode == "txt2img":
        body.update(width=SIZE, height=SIZE)
    else:
        start = start_image(team)
        body["init_asset"] = str(start.id)
    body.update(
        {
            "inpaint": {"mask": mask_url()},
            "outpaint": {"extend": {"right": 16}},  # 80 px wide: a multiple of 16 still
            "variation": {"variation": "subtle"},
            "upscale": {"scale": 2},
        }.get(mode, {})
    )
    job, asset = run(team, body)

    size = (SIZE * 2, SIZE * 2) if mode == "upscale" else (SIZE, SIZE)
    if mode == "outpaint":
        size = (SIZE + 16, SIZE)
    assert (asset.width, asset.height) == size
    image = pixels(asset.file).convert("RGB")
    assert image.size == size
    assert np.asarray(image).std() > 0  # a picture, not a blank
    assert asset.model_id == model.id
    assert asset.model_sha256 == model.sha256
    # Every step the job promised ran and was reported, with previews of the latents on the way.
    assert seen["steps"] == [(step, job.progress_total) for step in range(1, job.progress_total + 1)]
    assert job.progress_total == int(STEPS * job.params.get("strength", 1.0))
    assert seen["previews"]
    assert all(rgb.ndim == 3 and rgb.shape[2] == 3 for rgb in seen["previews"])
    if start is None:
        assert asset.parent_id is None
        assert not asset.mask
        return
    assert asset.parent_id == start.id
    if mode == "outpaint":  # the start image's own pixels, exactly, beside the new strip
        original = pixels(start.file).convert("RGB")
        assert image.crop((0, 0, SIZE, SIZE)).tobytes() == original.tobytes()
    if mode != "inpaint":
        assert not asset.mask
        return
    stored_mask = pixels(asset.mask).convert("L")
    assert stored_mask.size == (SIZE, SIZE)
    assert stored_mask.getpixel((5, SIZE // 2)) == 255
    assert stored_mask.getpixel((SIZE - 5, SIZE // 2)) == 0
    original = pixels(start.file).convert("RGB")
    # Away from the mask's feathered edge the kept part is the start image's own pixels; the painted part
    # is new.
    kept = (MASK_BOX[2] + 8, 0, SIZE, SIZE)
    assert image.crop(kept).tobytes() == original.crop(kept).tobytes()
    painted = (0, 0, MASK_BOX[2] - 4, SIZE)
    assert image.crop(painted).tobytes() != original.crop(painted).tobytes()


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl", "sd3"])
def test_a_single_file_makes_what_its_diffusers_folder_makes(team, installed, models_root, settings, family):
    single = installed(family, "single_file")
    folder = library.do_install_model(
        team["root"], str(build(models_root, family, "same_weights")), name=f"{family} same weights"
    )
    meta_path = settings.MODELS_DIR / folder.id / "studio.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "min_size": SIZE}))
    try:
        images = []
        for model_id in (single.id, folder.id):
            _, asset = run(team, {"model": model_id, "width": SIZE, "height": SIZE, "steps": 2})
            images.append(np.asarray(pixels(asset.file).convert("RGB"), dtype=np.int16))
        # The same weights make the same picture. Not always to the bit: a single file stores some tensors in
        # another layout (SDXL's and SD3's text projections), and on some CPUs the matrix kernels then round
        # differently, moving a pixel by one level here and there. A conversion mistake changes everything.
        diff = np.abs(images[0] - images[1])
        assert int(diff.max()) <= 1 and float((diff > 0).mean()) < 0.002, (int(diff.max()), (diff > 0).mean())
    finally:
        library.do_remove(team["root"], "model", folder.id)


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_sides_that_are_not_multiples_of_16_are_refused_for_sd3_and_flux(team, installed, family):
    model = installed(family, "folder")
    assert FAMILIES[family].size_multiple == 16
    body = {"prompt": "x", "model": model.id, "width": SIZE + 8, "height": SIZE}
    with pytest.raises(InvalidInput) as refused:
        services.check_job_body(body)
    assert refused.value.errors["width"] == ["Must be a multiple of 16."]
    # A start image of any size is fitted to the family's multiple.
    start = factories.asset(team["project"], team["bob"], size=SIZE)
    start.width, start.height = SIZE + 8, SIZE + 24
    start.save()
    params = services.check_job_body(
        {"prompt": "x", "model": model.id, "mode": "img2img", "init_asset": str(start.id)},
        user=team["bob"],
        project=team["project"],
    ).params
    assert params.width % 16 == 0 and params.height % 16 == 0
