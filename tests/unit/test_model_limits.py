"""A model's studio.json may lower its limits, never raise them above the site's: the image side stays at
most STUDIO_MAX_IMAGE_SIZE and the defaults stay inside what a job may ask for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generation import services
from generation.engine import registry
from studio.errors import InvalidInput


def model_folder(models_dir: Path, model_id: str, meta: dict) -> Path:
    folder = models_dir / model_id
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (folder / "studio.json").write_text(json.dumps(meta))
    return folder


def test_metadata_cannot_raise_the_size_limit_above_the_sites(settings, models_dir):
    model_folder(models_dir, "huge", {"max_size": 16384, "min_size": 1, "default_size": 16384,
                                      "default_steps": 10_000, "default_guidance": 500})  # fmt: skip
    info = registry.get_model("huge")
    assert info.max_size == settings.STUDIO_MAX_IMAGE_SIZE == 2048
    assert info.min_size == 8
    assert (info.default_width, info.default_height) == (2048, 2048)
    assert info.default_steps == 150
    assert info.default_guidance == 30
    with pytest.raises(InvalidInput) as refused:
        services.check_job_body({"prompt": "x", "model": "huge", "width": 4096, "height": 4096})
    assert refused.value.errors["width"] == ["Must be between 8 and 2048."]


def test_the_site_maximum_applies_to_every_family(settings, models_dir):
    settings.STUDIO_MAX_IMAGE_SIZE = 768
    model_folder(models_dir, "plain", {})
    assert registry.get_model("plain").max_size == 768
    model_folder(models_dir, "smaller", {"max_size": 640})
    assert registry.get_model("smaller").max_size == 640  # lowering is the metadata's to decide


def test_metadata_that_is_not_a_number_skips_the_model_and_keeps_the_others(models_dir, caplog):
    model_folder(models_dir, "broken", {"max_size": "as big as you like"})
    model_folder(models_dir, "fine", {})
    assert sorted(m.id for m in registry.list_models()) == ["fine"]
    assert "broken" in caplog.text and "max_size" in caplog.text


@pytest.mark.django_db
def test_an_install_carrying_studio_json_records_defaults_within_the_limits(team, models_dir, tmp_path):
    from generation import library
    from tests.unit.test_library_refusals import fake_diffusers_folder

    source = fake_diffusers_folder(tmp_path / "incoming" / "big")
    (source / "studio.json").write_text(json.dumps({"max_size": 16384, "default_size": 16384}))
    installed = library.do_install_model(team["root"], str(source), name="Big")
    assert json.loads((installed.path / "studio.json").read_text())["default_width"] == 2048
    assert registry.get_model(installed.id).max_size == 2048
    (source / "studio.json").write_text(json.dumps({"default_steps": "many"}))
    with pytest.raises(InvalidInput, match="default_steps in studio.json must be a number"):
        library.do_install_model(team["root"], str(source), name="Bad")
