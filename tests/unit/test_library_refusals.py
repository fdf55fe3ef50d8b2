"""Model installs refuse what could hurt the server with a clear sentence: headers built to crash the
parser, checkpoints with impossible shapes, and folders whose symlinks lead elsewhere on the disk. A job that
fails tells its members what happened without naming anything on the server."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import pytest

from generation import library, services
from generation.models import Job
from generation.tasks import run_job
from studio.errors import InvalidInput

pytestmark = pytest.mark.django_db(transaction=True)


def safetensors(path: Path, header: dict | bytes, data: bytes = b"") -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def tensor(shape: list[int], begin: int = 0) -> dict:
    size = 4
    for d in shape:
        size *= d
    return {"dtype": "F32", "shape": shape, "data_offsets": [begin, begin + size]}


def fake_diffusers_folder(path: Path) -> Path:
    """The smallest folder the library takes for a Stable Diffusion model (no torch needed to check it)."""
    (path / "unet").mkdir(parents=True)
    (path / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]})
    )
    (path / "unet" / "config.json").write_text("{}")
    safetensors(path / "unet" / "diffusion_pytorch_model.safetensors", {"w": tensor([1])}, b"\0" * 4)
    return path


def test_a_deeply_nested_header_is_refused_as_not_safetensors(team, models_dir, tmp_path, client):
    nested = b'{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    path = safetensors(tmp_path / "deep.safetensors", nested)
    with pytest.raises(InvalidInput, match="not a safetensors file"):
        library.do_install_model(team["root"], str(path))
    client.force_login(team["root"])
    response = client.post("/manage/models/", {"kind": "model", "path": str(path), "name": "Deep"})
    assert response.status_code == 400
    assert "not a safetensors file" in response.content.decode()
    assert not any(models_dir.iterdir()) if models_dir.exists() else True


@pytest.mark.parametrize(
    "header",
    [
        {"model.diffusion_model.input_blocks.0.0.weight": tensor([])},
        {
            "model.diffusion_model.input_blocks.0.0.weight": tensor([1, 4, 1, 1]),
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": tensor([], 16),
        },
    ],
)
def test_a_checkpoint_with_an_impossible_shape_is_refused_clearly(team, models_dir, tmp_path, header):
    size = max(info["data_offsets"][1] for info in header.values())
    path = safetensors(tmp_path / "odd.safetensors", header, b"\0" * size)
    with pytest.raises(InvalidInput) as refused:
        library.do_install_model(team["root"], str(path))
    assert "shape" in refused.value.message


def test_a_lora_with_an_impossible_shape_is_refused_clearly(team, models_dir, tmp_path):
    header = {"lora_unet_down_blocks_0_attentions_0_attn2_to_k.lora_down.weight": tensor([])}
    path = safetensors(tmp_path / "odd-lora.safetensors", header, b"\0" * 4)
    with pytest.raises(InvalidInput) as refused:
        library.do_install_lora(team["root"], str(path), family="sd1")
    assert "shape" in refused.value.message


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_folder_with_a_symlink_is_refused_and_nothing_outside_is_copied(team, models_dir, tmp_path, kind):
    secret = tmp_path / "elsewhere"
    secret.mkdir()
    (secret / "notes.txt").write_text("the server's private notes")
    source = fake_diffusers_folder(tmp_path / "incoming" / "sneaky")
    if kind == "file":
        (source / "unet" / "notes.txt").symlink_to(secret / "notes.txt")
    else:
        (source / "tokenizer").symlink_to(secret, target_is_directory=True)
    with pytest.raises(InvalidInput) as refused:
        library.do_install_model(team["root"], str(source), name="Sneaky")
    assert "symbolic link" in refused.value.message
    copied = [p for p in models_dir.rglob("*") if p.name == "notes.txt"] if models_dir.exists() else []
    assert copied == []


def test_the_same_folder_without_the_symlink_installs(team, models_dir, tmp_path):
    source = fake_diffusers_folder(tmp_path / "incoming" / "plain")
    assert library.do_install_model(team["root"], str(source), name="Plain").id == "plain"


def test_a_failed_job_names_no_server_paths_to_its_members(team, demo_model_dir, monkeypatch, caplog):
    from generation.engine import runner

    monkeypatch.setattr(services, "enqueue", lambda job_id, queue: None)

    def broken(request, hooks):
        raise OSError("[Errno 5] Input/output error: '/srv/models/demo/unet/diffusion_pytorch_model.bin'")

    monkeypatch.setattr(runner, "generate", broken)
    job = services.do_create_job(team["bob"], team["project"], {"prompt": "a red circle", "steps": 2})
    with caplog.at_level(logging.ERROR):
        assert run_job(str(job.id)) == "failed"
    error = Job.objects.get(id=job.id).error
    assert "/srv" not in error and "Errno" not in error
    assert str(job.id) in error  # what an administrator looks for in the worker's log
    assert "/srv/models/demo/unet/diffusion_pytorch_model.bin" in caplog.text


def test_a_failure_written_for_members_is_shown_as_it_is(team, demo_model_dir, monkeypatch):
    from generation.engine import runner
    from generation.engine.errors import GenerationError

    monkeypatch.setattr(services, "enqueue", lambda job_id, queue: None)

    def gone(request, hooks):
        raise GenerationError("The LoRA 'ink' is no longer installed.")

    monkeypatch.setattr(runner, "generate", gone)
    job = services.do_create_job(team["bob"], team["project"], {"prompt": "a red circle", "steps": 2})
    assert run_job(str(job.id)) == "failed"
    assert Job.objects.get(id=job.id).error == "Generation failed: The LoRA 'ink' is no longer installed."
