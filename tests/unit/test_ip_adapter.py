"""IP-Adapters: Root installs a tiny random-weight IP-Adapter of the published architecture (image_proj and
per-attention ip weights sized to the demo UNet, a CLIPVisionModelWithProjection image encoder), laid out as
the real downloads are; Bob's job feeds a reference image through it, and the image names the adapter. A
pickle IP-Adapter is refused; one of another family is a 400 for the job; a later job without one is
unaffected."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from django.core.files.base import ContentFile
from PIL import Image
from safetensors.torch import save_file

from gallery.models import Asset
from gallery.provenance import generation_manifest
from generation import library, services
from generation.engine import registry
from generation.models import Job
from generation.tasks import run_job
from studio.errors import InvalidInput
from studio.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

RED = (230, 25, 25)
CLIP_WIDTH = 32  # the tiny image encoder's projection
BODY = {"prompt": "a circle", "steps": 6, "guidance_scale": 5.0, "seed": 0}


def build_ip_adapter(root: Path, unet_dir: Path, *, cross_attention_dim: int | None = None) -> Path:
    """``root/models/ip-adapter_demo.safetensors`` and ``root/models/image_encoder/``, as the published
    repository lays them out: ``image_proj.proj`` / ``image_proj.norm`` (4 image tokens) and, for each
    cross-attention layer of the UNet in order, ``ip_adapter.<1, 3, 5, …>.to_k_ip`` / ``to_v_ip``."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(7)
    with torch.device("meta"):  # (only its layers' names and widths are read: no weights are made)
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(unet_dir)))
    width = cross_attention_dim or int(unet.config.cross_attention_dim)
    channels = list(unet.config.block_out_channels)
    tensors: dict[str, torch.Tensor] = {
        "image_proj.proj.weight": torch.randn(4 * width, CLIP_WIDTH) * 0.05,
        "image_proj.proj.bias": torch.zeros(4 * width),
        "image_proj.norm.weight": torch.ones(width),
        "image_proj.norm.bias": torch.zeros(width),
    }
    key = 1
    for name in unet.attn_processors:
        if not name.endswith("attn2.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(channels))[int(name.split(".")[1])]
        else:
            hidden = channels[int(name.split(".")[1])]
        tensors[f"ip_adapter.{key}.to_k_ip.weight"] = torch.randn(hidden, width) * 0.3
        tensors[f"ip_adapter.{key}.to_v_ip.weight"] = torch.randn(hidden, width) * 0.3
        key += 2
    folder = root / "models"
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "ip-adapter_demo.safetensors"))
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            projection_dim=CLIP_WIDTH,
        )
    )
    encoder.save_pretrained(str(folder / "image_encoder"), safe_serialization=True)
    return folder


@pytest.fixture
def studio(team, models_dir, settings):
    """The team, the bundled demo model as "demo" (in a models dir of the test's own), jobs run here."""
    from generation.engine.training import BUNDLED_MODEL_DIR

    settings.STUDIO_BUNDLED_MODELS = {"demo": BUNDLED_MODEL_DIR}
    return team


@pytest.fixture
def downloaded(tmp_path, studio) -> Path:
    from generation.engine.training import BUNDLED_MODEL_DIR

    return build_ip_adapter(tmp_path / "download", BUNDLED_MODEL_DIR / "unet")


def stored(team, colour) -> Asset:
    asset = factories.asset(team["project"], team["bob"], prompt="a flat colour")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buffer, format="PNG")
    asset.file.save(f"{asset.id}.png", ContentFile(buffer.getvalue()), save=False)
    asset.sha256 = hashlib.sha256(buffer.getvalue()).hexdigest()
    asset.save()
    return asset


def image_of(job: Job) -> Image.Image:
    asset = Asset.objects.get(job=job)
    with asset.file.open("rb") as fh:
        image = Image.open(io.BytesIO(fh.read()))
        image.load()
    return image.convert("RGB")


def generated(team, **body) -> tuple[Job, Image.Image]:
    job = services.do_create_job(team["bob"], team["project"], {**BODY, **body})
    assert run_job(str(job.id)) == "succeeded", Job.objects.get(id=job.id).error
    return job, image_of(job)


def test_an_installed_ip_adapter_steers_a_job_and_its_image_names_it(client, studio, downloaded):
    team = studio
    weights = downloaded / "ip-adapter_demo.safetensors"
    done = library.do_install_ip_adapter(team["root"], str(weights), name="Demo IP-Adapter")
    assert done.family == "demo"
    assert done.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    installed = sorted(p.relative_to(done.path).as_posix() for p in done.path.rglob("*") if p.is_file())
    assert installed == [
        "image_encoder/config.json",
        "image_encoder/model.safetensors",
        "ip_adapter.json",
        "ip_adapter.safetensors",
    ]
    meta = json.loads((done.path / "ip_adapter.json").read_text())
    assert meta["cross_attention_dim"] == 64 and meta["installed_by"] == "root"
    event = AuditEvent.objects.get(action="model.install", target=f"ip_adapter:{done.id}")
    assert event.details["sha256"] == done.sha256

    client.force_login(team["bob"])
    demo = next(m for m in client.get("/api/v1/models").json() if m["id"] == "demo")
    assert demo["features"] == ["regions", "reference", "ip_adapter"]

    red = stored(team, RED)
    _, before = generated(team)
    job, steered = generated(team, references=[{"image": str(red.id), "kind": "ip_adapter", "weight": 1.5}])
    use = {"id": done.id, "name": "Demo IP-Adapter", "sha256": done.sha256}
    assert job.params["references"] == [
        {"image": str(red.id), "kind": "ip_adapter", "weight": 1.5, "sha256": red.sha256, "ip_adapter": use}
    ]
    difference = np.abs(np.asarray(steered, dtype=np.int16) - np.asarray(before, dtype=np.int16))
    assert difference.mean() > 2, difference.mean()  # the image prompt changed the picture
    asset = Asset.objects.get(job=job)
    manifest = generation_manifest(asset, project_slug="poster", project_name="Poster", author="bob",
                                   with_parent=False)  # fmt: skip
    generation = next(a["data"] for a in manifest["assertions"] if a["label"] == "org.studio.generation")
    assert generation["references"][0]["ip_adapter"] == use
    page = client.get(f"/assets/{asset.id}/").content.decode()
    assert "IP-Adapter Demo IP-Adapter, weight 1.5" in page

    # Weight 0 adds nothing; and a job without an IP-Adapter afterwards is the image it was before.
    _, muted = generated(team, references=[{"image": str(red.id), "kind": "ip_adapter", "weight": 0.0}])
    assert np.abs(np.asarray(muted, dtype=np.int16) - np.asarray(before, dtype=np.int16)).max() <= 1
    _, after = generated(team)
    assert after.tobytes() == before.tobytes()


def test_ip_adapter_and_attention_references_together_and_in_a_batch(studio, downloaded):
    team = studio
    done = library.do_install_ip_adapter(team["root"], str(downloaded))  # the folder: its one adapter
    red = stored(team, RED)
    refs = [
        {"image": str(red.id), "kind": "ip_adapter", "weight": 1.0, "ip_adapter": done.id},
        {"image": str(red.id), "kind": "reference", "weight": 2.0, "fidelity": 1.0},
    ]
    first = services.do_create_job(team["bob"], team["project"], {**BODY, "references": refs})
    second = services.do_create_job(team["bob"], team["project"], {**BODY, "seed": 1, "references": refs})
    assert run_job(str(first.id)) == "succeeded"
    second.refresh_from_db()
    assert second.status == "succeeded"  # the same references: one call
    assert [r["kind"] for r in Asset.objects.get(job=second).params["references"]] == [
        "ip_adapter",
        "reference",
    ]


def test_a_pickle_ip_adapter_is_refused(studio, downloaded):
    team = studio
    (downloaded / "ip-adapter_demo.safetensors").unlink()
    (downloaded / "ip-adapter_demo.bin").write_bytes(b"\x80\x04\x95pickled")
    with pytest.raises(InvalidInput) as refused:
        library.do_install_ip_adapter(team["root"], str(downloaded / "ip-adapter_demo.bin"))
    assert "pickle" in refused.value.message and "safetensors" in refused.value.message
    with pytest.raises(InvalidInput) as refused:
        library.do_install_ip_adapter(team["root"], str(downloaded))
    assert "only pickle weights (ip-adapter_demo.bin)" in refused.value.message
    # A pickle wearing a .safetensors name is read no further than its header.
    (downloaded / "ip-adapter_demo.safetensors").write_bytes(b"\x80\x04\x95" + b"\0" * 64)
    with pytest.raises(InvalidInput) as refused:
        library.do_install_ip_adapter(team["root"], str(downloaded))
    assert "is not a safetensors file" in refused.value.message
    assert registry.list_ip_adapters() == []


def test_an_image_encoder_that_does_not_fit_or_is_missing_is_refused(studio, downloaded):
    team = studio
    config = json.loads((downloaded / "image_encoder" / "config.json").read_text())
    (downloaded / "image_encoder" / "config.json").write_text(json.dumps({**config, "projection_dim": 48}))
    with pytest.raises(InvalidInput) as refused:
        library.do_install_ip_adapter(team["root"], str(downloaded))
    assert "projection is 48 wide but ip-adapter_demo.safetensors reads 32" in refused.value.message
    (downloaded / "image_encoder" / "model.safetensors").unlink()
    (downloaded / "image_encoder" / "config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidInput) as refused:
        library.do_install_ip_adapter(team["root"], str(downloaded))
    assert "no model.safetensors" in refused.value.message


def test_an_ip_adapter_of_another_family_is_a_400_for_the_job(client, studio, tmp_path):
    from generation.engine.training import BUNDLED_MODEL_DIR

    team = studio
    folder = build_ip_adapter(tmp_path / "sd15", BUNDLED_MODEL_DIR / "unet", cross_attention_dim=768)
    done = library.do_install_ip_adapter(team["root"], str(folder), name="SD 1.5 IP-Adapter")
    assert done.family == "sd1"
    client.force_login(team["bob"])
    demo = next(m for m in client.get("/api/v1/models").json() if m["id"] == "demo")
    assert demo["features"] == ["regions", "reference"]
    red = stored(team, RED)
    for reference, message in [
        (
            {"kind": "ip_adapter", "ip_adapter": done.id},
            "The IP-Adapter SD 1.5 IP-Adapter is for Stable Diffusion 1.x models, not Demo shapes.",
        ),
        ({"kind": "ip_adapter"}, "No IP-Adapter for Demo shapes is installed (the IP-Adapters installed are"),
        ({"kind": "reference", "ip_adapter": done.id}, "an IP-Adapter is only for kind ip_adapter"),
    ]:
        body = {**BODY, "references": [{"image": str(red.id), **reference}]}
        response = client.post(
            "/api/v1/projects/poster/jobs", data=json.dumps(body), content_type="application/json"
        )
        assert response.status_code == 400, response.content
        assert message in " ".join(response.json()["errors"]["references"]), response.json()
    assert Job.objects.count() == 0


def test_admins_install_and_remove_ip_adapters_on_the_models_page(client, studio, downloaded):
    team = studio
    client.force_login(team["root"])
    response = client.post(
        "/manage/models/", {"kind": "ip_adapter", "path": str(downloaded), "name": "Shapes adapter"}
    )
    assert response.status_code == 302
    page = client.get("/manage/models/").content.decode()
    assert 'data-ip-adapter="shapes-adapter"' in page
    assert client.post("/manage/models/ip_adapter/shapes-adapter/remove/").status_code == 302
    assert registry.list_ip_adapters() == []
    assert AuditEvent.objects.filter(action="model.remove", target="ip_adapter:shapes-adapter").exists()
    (downloaded / "ip-adapter_demo.safetensors").unlink()
    response = client.post("/manage/models/", {"kind": "ip_adapter", "path": str(downloaded)})
    assert response.status_code == 400
    assert "holds no IP-Adapter .safetensors file" in response.content.decode()


def test_the_install_command_installs_an_ip_adapter(studio, downloaded):
    from django.core.management import call_command

    out = io.StringIO()
    call_command("install_model", str(downloaded), "--ip-adapter", "--name", "Shapes", stdout=out)
    assert "Installed IP-Adapter 'shapes' (Shapes, " in out.getvalue()
    assert [a.id for a in registry.list_ip_adapters("demo")] == ["shapes"]


@pytest.mark.parametrize(("family", "width"), [("sd1", 32), ("sdxl", 64)])
def test_tiny_sd15_and_sdxl_models_take_references_and_ip_adapters(team, models_dir, tmp_path, family, width):
    """The published SD 1.5 and SDXL layouts shrunk to a few channels (bench/gpu_modes.py): an IP-Adapter
    sized to each installs for its family (found by the installed model's cross-attention width), and
    jobs with attention references, the IP-Adapter, or both run, in every mode that takes them."""
    import importlib

    builders = importlib.import_module("bench.gpu_modes")
    folder = builders.build_random_folder(
        family, tmp_path / family, device="cpu", dtype=torch.float32, tiny=True
    )
    (folder / "studio.json").write_text(json.dumps({"min_size": 64, "default_size": 64}))  # (a tiny one)
    model = library.do_install_model(team["root"], str(folder), name=f"Tiny {family}")
    adapter = library.do_install_ip_adapter(
        team["root"], str(build_ip_adapter(tmp_path / "ip", folder / "unet"))
    )
    assert (
        adapter.family,
        json.loads((adapter.path / "ip_adapter.json").read_text())["cross_attention_dim"],
    ) == (
        family,
        width,
    )
    info = registry.get_model(model.id)
    assert info is not None and registry.model_features(info) == ["regions", "reference", "ip_adapter"]
    picture = stored(team, RED)
    base = {"prompt": "a red circle", "model": model.id, "steps": 2, "width": 64, "height": 64, "seed": 1}
    both = [
        {"image": str(picture.id), "kind": "reference", "weight": 1.0, "fidelity": 0.5},
        {"image": str(picture.id), "kind": "ip_adapter", "weight": 1.0},
    ]
    for body in (
        {**base, "references": both[:1]},
        {**base, "references": both[1:]},
        {**base, "references": both},
        {**base, "mode": "img2img", "init_asset": str(picture.id), "references": both},
    ):
        job = services.do_create_job(team["bob"], team["project"], body)
        assert run_job(str(job.id)) == "succeeded", Job.objects.get(id=job.id).error
        assert image_of(job).size == (64, 64)


def test_where_two_families_read_the_adapters_width_the_admin_chooses(team, models_dir, tmp_path):
    import importlib

    from generation.engine.training import BUNDLED_MODEL_DIR

    builders = importlib.import_module("bench.gpu_modes")
    folder = builders.build_random_folder(
        "sdxl", tmp_path / "sdxl", device="cpu", dtype=torch.float32, tiny=True
    )
    library.do_install_model(team["root"], str(folder), name="Tiny SDXL")  # 64-wide cross-attention
    library.do_install_model(team["root"], str(BUNDLED_MODEL_DIR), name="Shapes")  # the demo model's 64 too
    download = build_ip_adapter(tmp_path / "ip", folder / "unet")
    with pytest.raises(InvalidInput) as refused:
        library.do_install_ip_adapter(team["root"], str(download))
    assert refused.value.errors == {
        "family": [
            "Demo and Stable Diffusion XL models both read 64-wide cross-attention: choose the family."
        ]
    }
    with pytest.raises(InvalidInput) as refused:
        library.do_install_ip_adapter(team["root"], str(download), family="sd1")
    assert "not Stable Diffusion 1.x" in refused.value.message
    assert library.do_install_ip_adapter(team["root"], str(download), family="sdxl").family == "sdxl"
