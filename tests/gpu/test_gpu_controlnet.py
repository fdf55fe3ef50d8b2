"""ControlNet on the GPU: an SD 1.5-size and an SDXL-size model (random weights in the full published
architectures) each get a full-size random-weight ControlNet (``ControlNetModel.from_unet`` of the model's
own UNet, as the published ones are made), installed through the model library; a canny job and a two-unit
img2img job run through the worker in half precision, the ControlNet kept on the GPU in the model's precision
with its bytes counted in the pipeline cache, and the images come out finite and not black.

Runs where CUDA is present; skips elsewhere."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.django_db(transaction=True),
]

SIZES = {"sd1": 512, "sdxl": 1024}
DEVICE = "cuda"


@pytest.fixture
def models_dir(models_dir):
    from generation.engine import runner

    yield models_dir
    runner.cache().clear()
    torch.cuda.empty_cache()


def build_controlnet(model_folder: Path, target: Path, device: str = "cuda", dtype: Any = None) -> Path:
    """A full-size random-weight ControlNet of the model's UNet, in fp16 safetensors as published ones
    download: the UNet's weights copied, the zero convolutions given small random weights (a trained
    ControlNet's are not zero)."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    dtype = dtype or torch.float16
    unet = UNet2DConditionModel.from_pretrained(str(model_folder / "unet"), dtype=dtype).to(device)
    torch.manual_seed(0)
    controlnet = ControlNetModel.from_unet(unet).to(device=device, dtype=dtype)
    with torch.no_grad():
        for module in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            for parameter in module.parameters():
                parameter.normal_(0.0, 0.02)
    controlnet.save_pretrained(str(target), safe_serialization=True)
    del unet, controlnet
    if device == "cuda":
        torch.cuda.empty_cache()
    return target


def upload_square(team, size: int) -> Any:
    from django.core.files.base import ContentFile
    from PIL import Image, ImageDraw

    from gallery.services import do_upload_image

    image = Image.new("RGB", (size, size), (0, 0, 0))
    ImageDraw.Draw(image).rectangle(
        [size // 4, size // 4, 3 * size // 4, 3 * size // 4], fill=(255, 255, 255)
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return do_upload_image(team["bob"], team["project"], ContentFile(buffer.getvalue(), name="control.png"))


def pixels(asset) -> Any:
    import numpy as np
    from PIL import Image

    with asset.file.open("rb") as fh:
        return np.asarray(Image.open(io.BytesIO(fh.read())).convert("RGB"), dtype=np.float32)


@pytest.mark.parametrize("family", list(SIZES))
def test_a_controlnet_job_runs_in_half_precision(team, models_dir, random_models, tmp_path, family):
    import numpy as np

    from gallery.models import Asset
    from generation import library, services
    from generation.engine import registry, runner
    from generation.tasks import run_job

    folder, _decoder = random_models
    source = folder(family)
    model_id = library.do_install_model(team["root"], str(source), name=f"Random {family}").id
    controlnet = library.do_install_controlnet(
        team["root"],
        str(build_controlnet(source, tmp_path / f"{family}-canny", DEVICE)),
        name=f"{family} canny",
    )
    assert controlnet.family == family
    size = SIZES[family]
    control_image = upload_square(team, size)
    unit = {"id": controlnet.id, "image": str(control_image.id), "preprocessor": "canny", "weight": 0.8}
    body = {"prompt": "a lighthouse", "model": model_id, "steps": 4, "seed": 5, "width": size, "height": size}

    job = services.do_create_job(team["bob"], team["project"], {**body, "controlnets": [unit]})
    assert run_job(str(job.id)) == "succeeded", job.id
    asset = Asset.objects.get(job=job)
    made = pixels(asset)
    assert made.shape == (size, size, 3)
    assert np.isfinite(made).all() and made.max() > 0 and made.std() > 1.0  # no NaN turned black
    assert asset.control_maps.get().width == size

    # The ControlNet stays loaded with the model: on the GPU, in fp16, its bytes counted with the model's.
    cache = runner.cache()
    model = registry.get_model(model_id)
    slot = cache._slots[(model.id, str(model.path))]
    [(module, size_bytes)] = list(slot.addons.values())
    assert next(module.parameters()).device.type == "cuda"
    assert next(module.parameters()).dtype == torch.float16
    assert cache.tiers()[model.id].bytes >= size_bytes > 0

    # Two units at once, from a start image (the same ControlNet twice, edges and the image as given).
    two = [unit, {**unit, "preprocessor": "none", "weight": 0.5, "start": 0.2}]
    job = services.do_create_job(
        team["bob"],
        team["project"],
        {**body, "mode": "img2img", "init_asset": str(asset.id), "strength": 0.75, "controlnets": two},
    )
    assert run_job(str(job.id)) == "succeeded", job.id
    second = Asset.objects.get(job=job)
    made = pixels(second)
    assert np.isfinite(made).all() and made.max() > 0 and made.std() > 1.0
    assert second.control_maps.count() == 2
