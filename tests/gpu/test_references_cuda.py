"""Reference images on the GPU: SD 1.5-size and SDXL-size random-weight models (the full published
architectures) installed through the model library with an IP-Adapter sized to each UNet, and jobs steered by
attention references, by the IP-Adapter and by both at once run through the worker in half precision. Each
image is stored at its size, finite (no NaN turned black) and not black; the pipeline is left in fp16 with
its own attention processors.

Runs where CUDA is present; skips elsewhere."""

from __future__ import annotations

import io
from typing import Any

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.django_db(transaction=True),
]

SIZES = {"sd1": 512, "sdxl": 1024}


@pytest.fixture
def models_dir(models_dir):
    """The shared empty models dir, and the GPU's pipeline cache emptied after each test."""
    from generation.engine import runner

    yield models_dir
    runner.cache().clear()
    torch.cuda.empty_cache()


def run(team, body: dict[str, Any], size: int):
    import numpy as np
    from PIL import Image

    from gallery.models import Asset
    from generation import services
    from generation.tasks import run_job

    job = services.do_create_job(team["bob"], team["project"], {"prompt": "a lighthouse", "seed": 5, **body})
    assert run_job(str(job.id)) == "succeeded", job.id
    asset = Asset.objects.get(job=job)
    with asset.file.open("rb") as fh:
        image = Image.open(io.BytesIO(fh.read()))
        image.load()
    assert image.size == (size, size)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    assert np.isfinite(pixels).all()
    assert pixels.max() > 10 and pixels.std() > 1, "a black or flat image"
    return asset


@pytest.mark.parametrize("family", list(SIZES))
def test_reference_and_ip_adapter_jobs_run_in_half_precision(
    team, models_dir, random_models, family, tmp_path
):
    from diffusers.models.attention_processor import AttnProcessor2_0

    from generation import library
    from generation.engine import registry, runner
    from tests import factories
    from tests.unit.test_ip_adapter import build_ip_adapter

    size = SIZES[family]
    folder, _decoder = random_models
    installed = library.do_install_model(team["root"], str(folder(family)), name=f"Random {family}")
    model = registry.get_model(installed.id)
    assert model is not None and model.family == family
    download = build_ip_adapter(tmp_path / "ip-adapter", folder(family) / "unet")
    adapter = library.do_install_ip_adapter(team["root"], str(download), name=f"Random {family} IP-Adapter")
    assert adapter.family == family
    assert registry.model_features(model) == ["reference", "ip_adapter"]

    picture = factories.asset(team["project"], team["bob"], size=size // 2)
    base = {"model": model.id, "steps": 4, "width": size, "height": size}
    reference = {"image": str(picture.id), "kind": "reference", "weight": 1.0, "fidelity": 0.5}
    prompt = {"image": str(picture.id), "kind": "ip_adapter", "weight": 0.8}
    for references in ([reference], [prompt], [reference, prompt]):
        asset = run(team, {**base, "references": references}, size)
        assert [r["kind"] for r in asset.params["references"]] == [r["kind"] for r in references]
    run(
        team,
        {**base, "mode": "img2img", "init_asset": str(picture.id), "references": [reference, prompt]},
        size,
    )

    loaded = runner.cache().get(model)
    unet = loaded.pipe.unet
    assert unet.dtype == torch.float16
    assert unet.encoder_hid_proj is None  # the IP-Adapter went with its job
    assert all(type(p) is AttnProcessor2_0 for p in unet.attn_processors.values())
    run(team, base, size)  # and a job without references runs as ever
