"""The model library: a tiny model of every family installs from its real layout and generates through the
worker; pickles and corrupt files are refused before anything is written; LoRAs apply to one job only."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import pytest
from django.core.management import call_command
from PIL import Image

from gallery.models import Asset
from generation import library, services
from generation.engine import registry
from generation.tasks import run_job
from studio.errors import InvalidInput
from studio.models import AuditEvent
from tests import library_models

pytestmark = pytest.mark.django_db(transaction=True)


def generate(team, model_id: str, size: int, **params) -> Image.Image:
    """One image from the model, through job creation, the worker and the gallery."""
    body = {"prompt": "a red circle", "model": model_id, "width": size, "height": size, "steps": 2, "seed": 3}
    job = services.do_create_job(team["bob"], team["project"], {**body, **params})
    assert run_job(str(job.id)) == "succeeded", job.id
    asset = Asset.objects.get(job=job)
    with asset.file.open("rb") as fh:
        image = Image.open(io.BytesIO(fh.read()))
        image.load()
    assert image.size == (size, size)
    return image


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl", "sd3", "flux"])
def test_a_diffusers_folder_of_each_family_installs_and_generates(team, models_dir, tmp_path, family):
    source = library_models.build_folder(family, tmp_path / "incoming" / f"tiny-{family}")
    installed = library.do_install_model(team["root"], str(source), name=f"Tiny {family}")

    meta = json.loads((models_dir / installed.id / "studio.json").read_text())
    assert meta["family"] == family
    assert meta["sha256"] == installed.sha256
    assert meta["installed_by"] == "root"
    info = registry.get_model(installed.id)
    assert info is not None
    assert info.family == family
    size = library_models.FAMILY_SIZES[family]
    generate(team, installed.id, size)
    asset = Asset.objects.get(model_id=installed.id)
    assert asset.model_sha256 == installed.sha256
    assert AuditEvent.objects.filter(action="model.install", target=f"model:{installed.id}").count() == 1


def test_a_single_file_checkpoint_installs_and_makes_what_its_diffusers_folder_makes(
    team, models_dir, tmp_path, monkeypatch
):
    from generation.engine import pipelines

    configs = tmp_path / "configs"
    checkpoint = library_models.build_single_file(tmp_path / "incoming" / "tiny.safetensors", configs)
    monkeypatch.setattr(pipelines, "CONFIGS_DIR", configs)
    single = library.do_install_model(team["root"], str(checkpoint), name="Tiny single")
    folder = library.do_install_model(
        team["root"],
        str(library_models.build_folder("sd1", tmp_path / "incoming" / "folder")),
        name="Tiny folder",
    )

    assert json.loads((models_dir / single.id / "studio.json").read_text())["format"] == "single_file"
    assert sorted(p.name for p in (models_dir / single.id).iterdir()) == [
        "studio.json",
        "tiny-single.safetensors",
    ]
    assert registry.get_model(single.id).family == "sd1"
    # The same weights, loaded from either layout, make the same picture.
    assert generate(team, single.id, 256).tobytes() == generate(team, folder.id, 256).tobytes()
    assert Asset.objects.get(model_id=single.id).model_sha256 == single.sha256


def test_a_pickle_named_safetensors_is_refused_and_never_unpickled(team, models_dir, tmp_path):
    marker = tmp_path / "unpickled"

    class WritesAFile:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bait = tmp_path / "incoming" / "model.safetensors"
    bait.parent.mkdir()
    bait.write_bytes(pickle.dumps(WritesAFile()))
    with pytest.raises(InvalidInput, match="not a safetensors file"):
        library.do_install_model(team["root"], str(bait))
    (tmp_path / "incoming" / "model.ckpt").write_bytes(bait.read_bytes())
    with pytest.raises(InvalidInput, match="pickle format"):
        library.do_install_model(team["root"], str(tmp_path / "incoming" / "model.ckpt"))
    with pytest.raises(InvalidInput, match="not a safetensors file"):
        library.do_install_lora(team["root"], str(bait), family="sd1")
    assert not marker.exists()
    assert not models_dir.exists() or list(models_dir.rglob("*")) == []
    assert not AuditEvent.objects.filter(action="model.install").exists()


def test_a_truncated_checkpoint_fails_the_install_and_leaves_nothing(team, models_dir, tmp_path):
    source = library_models.build_folder("sd1", tmp_path / "incoming" / "tiny")
    weights = source / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(InvalidInput, match="truncated") as refused:
        library.do_install_model(team["root"], str(source))
    assert refused.value.errors["path"]
    assert list(models_dir.iterdir()) == [] if models_dir.exists() else True
    assert registry.list_models() == []


def test_a_folder_with_only_pickle_weights_is_refused(team, models_dir, tmp_path):
    source = library_models.build_folder("sd1", tmp_path / "incoming" / "tiny")
    weights = source / "vae" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(InvalidInput, match="vae/ has no .safetensors weights"):
        library.do_install_model(team["root"], str(source))


def test_the_command_installs_and_removes_with_audit_events(team, models_dir, tmp_path, capsys):
    source = library_models.build_folder("sd2", tmp_path / "incoming" / "tiny")
    call_command("install_model", str(source), "--name", "House SD2")
    assert "Installed model 'house-sd2'" in capsys.readouterr().out
    info = registry.get_model("house-sd2")
    assert (info.family, info.default_width, info.default_scheduler) == ("sd2", 768, "DPM++ 2M Karras")
    call_command("remove_model", "house-sd2")
    assert registry.get_model("house-sd2") is None
    assert list(models_dir.iterdir()) == []
    actions = list(AuditEvent.objects.order_by("time").values_list("action", "target"))
    assert actions == [("model.install", "model:house-sd2"), ("model.remove", "model:house-sd2")]


def build_lora(model_folder: Path, target: Path) -> Path:
    """A random LoRA for the tiny model's UNet, saved the way diffusers saves LoRAs (safetensors)."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(1)
    unet = UNet2DConditionModel.from_pretrained(str(model_folder / "unet"))
    unet.add_adapter(
        LoraConfig(
            r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
        )
    )
    target.mkdir(parents=True)
    StableDiffusionPipeline.save_lora_weights(
        str(target), unet_lora_layers=get_peft_model_state_dict(unet), safe_serialization=True
    )
    return target / "pytorch_lora_weights.safetensors"


def test_a_lora_changes_its_job_only_and_leaves_the_cached_model_as_it_was(
    team, models_dir, tmp_path, client
):
    source = library_models.build_folder("sd1", tmp_path / "incoming" / "tiny")
    model = library.do_install_model(team["root"], str(source), name="Tiny")
    lora_file = build_lora(source, tmp_path / "incoming" / "lora")
    with pytest.raises(InvalidInput, match="choose the family"):
        library.do_install_lora(team["root"], str(lora_file), name="Ink")
    lora = library.do_install_lora(team["root"], str(lora_file), name="Ink", family="sd1")

    client.force_login(team["bob"])
    listed = {m["id"]: m for m in client.get("/api/v1/models").json()}
    assert listed[model.id]["loras"] == [{"id": "ink", "name": "Ink", "family": "sd1"}]

    before = generate(team, model.id, 256)
    with_lora = generate(team, model.id, 256, loras=[{"id": "ink", "weight": 1.5}])
    after = generate(team, model.id, 256)
    assert with_lora.tobytes() != before.tobytes()
    assert after.tobytes() == before.tobytes()
    job = Asset.objects.filter(model_id=model.id).order_by("created_at")[1].job
    assert job.params["loras"] == [{"id": "ink", "weight": 1.5, "sha256": lora.sha256}]


def test_job_loras_are_checked(team, models_dir, tmp_path):
    source = library_models.build_folder("sd1", tmp_path / "incoming" / "tiny")
    library.do_install_model(team["root"], str(source), name="Tiny")
    lora_file = build_lora(source, tmp_path / "incoming" / "lora")
    library.do_install_lora(team["root"], str(lora_file), name="Ink", family="sd1")
    library.do_install_lora(team["root"], str(lora_file), name="Other", family="sdxl")

    def errors(loras):
        body = {"prompt": "x", "model": "tiny", "width": 256, "height": 256, "loras": loras}
        with pytest.raises(InvalidInput) as refused:
            services.check_job_body(body)
        return refused.value.errors["loras"]

    assert errors([{"id": "nope", "weight": 1}]) == ["No such LoRA: 'nope'."]
    assert "not Tiny" in errors([{"id": "other", "weight": 1}])[0]
    assert errors([{"id": "ink", "weight": 3}]) == ["Item 1, weight: must be between -2 and 2."]
    assert errors([{"id": "ink", "weight": 1}, {"id": "ink", "weight": 0.5}]) == ["Ink is chosen twice."]
    assert errors([{"id": "ink", "weight": 1}] * 6) == ["At most 5 LoRAs at once."]
    assert errors("ink") == ['Give a list of {"id": LoRA id, "weight": number}.']


def test_the_models_page_installs_lists_and_removes(team, models_dir, tmp_path, client):
    client.force_login(team["root"])
    response = client.post("/manage/models/", {"kind": "model", "path": str(tmp_path / "missing")})
    assert response.status_code == 400
    assert "No such file or folder on the server." in response.content.decode()
    source = library_models.build_folder("sd1", tmp_path / "incoming" / "tiny")
    response = client.post("/manage/models/", {"kind": "model", "path": str(source), "name": "Poster base"})
    assert response.status_code == 302
    page = client.get("/manage/models/").content.decode()
    assert 'data-model="poster-base"' in page
    assert "Stable Diffusion 1.x" in page
    assert registry.get_model("poster-base").sha256[:12] in page
    assert client.post("/manage/models/model/poster-base/remove/").status_code == 302
    assert 'data-model="poster-base"' not in client.get("/manage/models/").content.decode()
