"""Fixtures the URL matrices share (test_url_matrix walks roles, test_token_scopes walks token scopes)."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from PIL import Image

from gallery.models import Asset, Board
from gallery.pngmeta import png_with_provenance
from generation.models import Job
from studio.models import ApiToken
from tests import factories


@pytest.fixture
def world(db, demo_model_dir):
    team = factories.team()
    job = Job.objects.create(
        project=team["project"],
        created_by=team["bob"],
        model_id="demo",
        queue="gpu",
        params=factories.job_params(),
        progress_total=20,
    )
    png = png_with_provenance(
        Image.new("RGB", (8, 8)),
        {
            "prompt": "x",
            "steps": 1,
            "scheduler": "Euler",
            "guidance_scale": 1,
            "seed": 1,
            "width": 8,
            "height": 8,
        },
        {"model_name": "Demo", "model_sha256": "0" * 64},
    )
    asset = Asset(
        project=team["project"],
        job=job,
        width=8,
        height=8,
        seed=1,
        prompt="x",
        params={},
        model_id="demo",
        model_name="Demo",
        model_sha256="0" * 64,
        created_by=team["bob"],
    )
    asset.file.save("m.png", ContentFile(png), save=True)
    asset.mask.save("m.mask.png", ContentFile(png), save=True)  # as if inpainted
    factories.token(team["alice"])
    values = {
        "job": str(job.id),
        "asset": str(asset.id),
        "alice_token": str(ApiToken.objects.get(user=team["alice"]).id),
        "board": str(
            Board.objects.create(project=team["project"], name="Picks", created_by=team["alice"]).id
        ),
    }
    return team, values
