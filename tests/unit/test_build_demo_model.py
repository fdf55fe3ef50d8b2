"""``manage.py build_demo_model --if-missing``: what the studio's first start runs to have a default model."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from generation.engine import registry


def test_if_missing_builds_a_model_once_and_then_leaves_it_alone(settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    settings.MODELS_DIR.mkdir()
    out = io.StringIO()
    call_command("build_demo_model", "--if-missing", "--name", "starter", stdout=out)
    assert "Building the default model 'starter'" in out.getvalue()
    model = registry.get_model("starter")
    assert model is not None
    weights = sorted(p for p in (settings.MODELS_DIR / "starter").rglob("*.safetensors"))
    before = {p: p.stat().st_mtime_ns for p in weights}

    again = io.StringIO()
    call_command("build_demo_model", "--if-missing", "--name", "starter", stdout=again)
    assert again.getvalue() == ""
    assert {p: p.stat().st_mtime_ns for p in weights} == before


def test_without_if_missing_an_existing_folder_is_an_error(settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    (settings.MODELS_DIR / "taken").mkdir(parents=True)
    with pytest.raises(CommandError, match="pass --force"):
        call_command("build_demo_model", "--name", "taken")
