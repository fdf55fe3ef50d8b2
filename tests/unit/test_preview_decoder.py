"""Tiny preview decoders: an admin installs an AutoencoderTiny folder for a family, and that family's jobs
then preview the decoded picture at the image's size instead of the latent colour projection; pickles and
decoders for another latent space are refused at install."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from gallery.models import Asset
from generation import library, services
from generation.engine import registry
from generation.engine.preview import Previewer
from generation.tasks import run_job
from generation.worker import JobMonitor
from studio.errors import InvalidInput
from studio.models import AuditEvent
from tests import library_models

pytestmark = pytest.mark.django_db(transaction=True)

SIZE = library_models.FAMILY_SIZES["sd1"]  # 256 px: 32×32 latents (the VAE is 8× smaller)


def build_decoder(path: Path, latent_channels: int = 4, upsamples: int = 3) -> Path:
    """A tiny random-weight AutoencoderTiny folder (TAESD's layout, a few channels): ``upsamples`` doublings
    between latents and pixels, 3 for the 8× VAEs of SD 1.x and the other real families."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    levels = upsamples + 1
    decoder: Any = AutoencoderTiny(
        encoder_block_out_channels=(8,) * levels,
        decoder_block_out_channels=(8,) * levels,
        num_encoder_blocks=(1,) * levels,
        num_decoder_blocks=(1,) * levels,
        latent_channels=latent_channels,
    )
    decoder.save_pretrained(str(path), safe_serialization=True)
    return path


@pytest.fixture
def sd1_model(team, models_dir, tmp_path) -> str:
    source = library_models.build_folder("sd1", tmp_path / "incoming" / "tiny-sd1")
    return library.do_install_model(team["root"], str(source), name="Tiny SD1").id


@pytest.fixture
def previews(monkeypatch) -> list[tuple[int, int, int]]:
    """The shape of every preview the diffusion loop hands the job's monitor."""
    shapes: list[tuple[int, int, int]] = []
    original = JobMonitor.on_preview

    def on_preview(self, step, total, rgb):
        shapes.append(rgb.shape)
        original(self, step, total, rgb)

    monkeypatch.setattr(JobMonitor, "on_preview", on_preview)
    return shapes


@pytest.fixture
def decodes(monkeypatch) -> list[tuple[int, ...]]:
    """The latents shape of every preview drawn by a tiny decoder."""
    seen: list[tuple[int, ...]] = []
    original = Previewer.decode

    def decode(self, latents):
        seen.append(tuple(latents.shape))
        return original(self, latents)

    monkeypatch.setattr(Previewer, "decode", decode)
    return seen


def run(team, model_id: str) -> None:
    body = {"prompt": "a red circle", "model": model_id, "width": SIZE, "height": SIZE, "steps": 2, "seed": 3}
    job = services.do_create_job(team["bob"], team["project"], body)
    assert run_job(str(job.id)) == "succeeded"
    asset = Asset.objects.get(job=job)
    assert (asset.width, asset.height) == (SIZE, SIZE)


def test_an_installed_decoder_draws_the_previews_at_the_image_size(
    team, sd1_model, models_dir, tmp_path, previews, decodes, client, monkeypatch
):
    from diffusers import AutoencoderTiny

    run(team, sd1_model)
    assert previews == [(32, 32, 3), (32, 32, 3)]  # the latent colour factors, at latent size
    assert decodes == []

    source = build_decoder(tmp_path / "incoming" / "taesd")
    installed = library.do_install_preview_decoder(team["root"], str(source), "sd1", name="TAESD")
    folder = models_dir / "_preview" / "sd1"
    assert installed.path == folder
    weights = (source / "diffusion_pytorch_model.safetensors").read_bytes()
    assert installed.sha256 == hashlib.sha256(weights).hexdigest()
    meta = json.loads((folder / "decoder.json").read_text())
    assert (meta["family"], meta["name"], meta["sha256"]) == ("sd1", "TAESD", installed.sha256)
    assert meta["installed_by"] == "root"
    event = AuditEvent.objects.get(action="model.install", target="preview:sd1")
    assert event.details["sha256"] == installed.sha256
    assert registry.get_model(sd1_model) is not None  # the decoder's folder is not taken for a model
    assert [m.id for m in registry.list_models()] == [sd1_model]

    loads: list[str] = []
    original_load = AutoencoderTiny.from_pretrained.__func__

    def counting_load(cls, path, **kwargs):
        loads.append(path)
        return original_load(cls, path, **kwargs)

    monkeypatch.setattr(AutoencoderTiny, "from_pretrained", classmethod(counting_load))
    previews.clear()
    run(team, sd1_model)
    run(team, sd1_model)
    assert previews == [(SIZE, SIZE, 3)] * 4  # decoded pictures, at the image's size
    assert decodes == [(1, 4, 32, 32)] * 4  # the first image's latents, decoded
    assert loads == [str(folder)]  # loaded once, then kept with the pipeline

    client.force_login(team["root"])
    page = client.get("/manage/models/").content.decode()
    assert 'data-preview="sd1"' in page
    assert installed.sha256[:12] in page
    assert client.post("/manage/models/preview/sd1/remove/").status_code == 302
    assert 'data-preview="sd1"' not in client.get("/manage/models/").content.decode()
    assert registry.get_preview_decoder("sd1") is None
    assert AuditEvent.objects.filter(action="model.remove", target="preview:sd1").count() == 1
    previews.clear()
    run(team, sd1_model)
    assert previews == [(32, 32, 3), (32, 32, 3)]  # back to the colour factors


def test_a_pickle_named_safetensors_is_refused_as_a_preview_decoder(team, models_dir, tmp_path):
    marker = tmp_path / "unpickled"

    class WritesAFile:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    source = build_decoder(tmp_path / "incoming" / "taesd")
    (source / "diffusion_pytorch_model.safetensors").write_bytes(pickle.dumps(WritesAFile()))
    with pytest.raises(InvalidInput, match="not a safetensors file") as refused:
        library.do_install_preview_decoder(team["root"], str(source), "sd1")
    assert refused.value.errors["path"]
    (source / "diffusion_pytorch_model.safetensors").rename(source / "diffusion_pytorch_model.bin")
    with pytest.raises(InvalidInput, match="pickle weights are never loaded"):
        library.do_install_preview_decoder(team["root"], str(source), "sd1")
    assert not marker.exists()
    assert registry.get_preview_decoder("sd1") is None
    assert not models_dir.exists() or [p for p in models_dir.rglob("*") if p.is_file()] == []
    assert not AuditEvent.objects.filter(action="model.install").exists()


def test_a_decoder_for_another_latent_space_is_refused_with_a_clear_message(team, models_dir, tmp_path):
    flux_decoder = build_decoder(tmp_path / "incoming" / "taef1", latent_channels=16)
    with pytest.raises(InvalidInput) as refused:
        library.do_install_preview_decoder(team["root"], str(flux_decoder), "sdxl")
    message = (
        "This decoder reads 16-channel latents, but Stable Diffusion XL latents have 4 channels: install a "
        "decoder made for Stable Diffusion XL."
    )
    assert refused.value.message == message
    assert refused.value.errors == {"family": [message]}
    sd_decoder = build_decoder(tmp_path / "incoming" / "taesd")
    with pytest.raises(InvalidInput, match="reads 4-channel latents, but FLUX.1 latents have 16 channels"):
        library.do_install_preview_decoder(team["root"], str(sd_decoder), "flux")
    assert registry.list_preview_decoders() == []
    # The right family takes it.
    assert library.do_install_preview_decoder(team["root"], str(flux_decoder), "flux").family == "flux"
    assert [d.family for d in registry.list_preview_decoders()] == ["flux"]


def test_the_command_installs_a_preview_decoder_and_refuses_a_model_folder(
    team, models_dir, tmp_path, capsys
):
    source = build_decoder(tmp_path / "incoming" / "taesdxl")
    call_command("install_model", str(source), "--preview-decoder", "sdxl")
    out = capsys.readouterr().out
    decoder = registry.get_preview_decoder("sdxl")
    assert decoder is not None
    assert "Installed the Stable Diffusion XL preview decoder 'taesdxl'" in out
    assert decoder.sha256 in out
    # A second install replaces the family's decoder.
    call_command(
        "install_model", str(build_decoder(tmp_path / "b" / "taesdxl-2")), "--preview-decoder", "sdxl"
    )
    replaced = registry.get_preview_decoder("sdxl")
    assert replaced is not None and replaced.name == "taesdxl-2"
    assert [p.name for p in (models_dir / "_preview").iterdir()] == ["sdxl"]

    model = library_models.build_folder("sd1", tmp_path / "incoming" / "tiny-sd1")
    with pytest.raises(CommandError, match="config.json is for AutoencoderKL, not a tiny preview decoder"):
        call_command("install_model", str(model / "vae"), "--preview-decoder", "sd1")
    with pytest.raises(CommandError, match="AutoencoderTiny folder"):
        call_command("install_model", str(model), "--preview-decoder", "sd1")


def test_the_models_page_installs_a_preview_decoder_and_names_what_is_missing(
    team, models_dir, tmp_path, client
):
    client.force_login(team["root"])
    source = build_decoder(tmp_path / "incoming" / "taesd")
    response = client.post("/manage/models/", {"kind": "preview", "path": str(source), "family": ""})
    assert response.status_code == 400
    assert "Choose the family it decodes" in response.content.decode()
    response = client.post("/manage/models/", {"kind": "preview", "path": str(source), "family": "sd1"})
    assert response.status_code == 302
    page = client.get("/manage/models/").content.decode()
    assert 'data-preview="sd1"' in page
    assert "Preview decoder “taesd” (Stable Diffusion 1.x) installed." in page
