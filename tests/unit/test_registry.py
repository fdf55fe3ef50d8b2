"""The model registry reads model folders without torch, refuses pickles, and prefers installed models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from generation.engine.registry import Registry, folder_sha256


@pytest.fixture
def model_copy(demo_model_dir, tmp_path) -> Path:  # a model folder we may change
    target = tmp_path / "shipped" / "demo_model"
    shutil.copytree(demo_model_dir, target)
    return target


def test_a_shipped_model_is_listed_under_its_id_until_one_is_installed(model_copy, tmp_path):
    models_dir = tmp_path / "models"
    registry = Registry(models_dir, {"demo": model_copy})
    assert registry.models()["demo"].path == model_copy
    installed = models_dir / "demo"
    shutil.copytree(model_copy, installed)
    meta = json.loads((installed / "studio.json").read_text())
    (installed / "studio.json").write_text(json.dumps({**meta, "name": "House demo", "default_steps": 12}))
    info = registry.models()["demo"]
    assert info.path == installed
    assert info.name == "House demo"
    assert info.default_steps == 12


def test_folders_with_pickle_weights_are_skipped(model_copy, tmp_path):
    (model_copy / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"not loaded, ever")
    assert Registry(tmp_path / "none", {"demo": model_copy}).models() == {}


def test_a_folder_without_a_known_pipeline_is_skipped(tmp_path):
    folder = tmp_path / "models" / "odd"
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "SomethingElsePipeline"}))
    assert Registry(tmp_path / "models").models() == {}


def test_the_sha256_covers_every_file_and_changes_with_them(model_copy):
    first = folder_sha256(model_copy)
    assert first == folder_sha256(model_copy)
    (model_copy / "scheduler" / "scheduler_config.json").write_text("{}")
    assert folder_sha256(model_copy) != first
