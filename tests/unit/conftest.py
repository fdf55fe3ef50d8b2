"""Fixtures the unit tests share: the URL matrices' world (test_url_matrix walks roles, test_token_scopes
walks token scopes), and storage on the filesystem and on S3."""

from __future__ import annotations

import uuid

import boto3
import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from moto import server as moto_server
from PIL import Image

from gallery.models import Asset, Board, ControlMap
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
    control_map = ControlMap(project=team["project"], job=job, unit=0, sha256="0" * 64, width=8, height=8)
    control_map.file.save("m.control.png", ContentFile(png), save=True)  # as if steered by a ControlNet
    control_map.assets.add(asset)
    factories.token(team["alice"])
    values = {
        "job": str(job.id),
        "asset": str(asset.id),
        "alice_token": str(ApiToken.objects.get(user=team["alice"]).id),
        "board": str(
            Board.objects.create(project=team["project"], name="Picks", created_by=team["alice"]).id
        ),
        "style": str(_style(team)),
    }
    return team, values


def _style(team) -> int:
    from generation.models import Style, StyleVersion

    style = Style.objects.create(project=team["project"], name="Ink", created_by=team["alice"])
    StyleVersion.objects.create(style=style, number=1, prompt_prefix="ink drawing", created_by=team["alice"])
    return style.id


# --- each storage test runs on the filesystem and on S3 --
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(params=["filesystem", "s3"])
def backend(request, settings, tmp_path):
    """Switch the default storage; pytest-django's ``settings`` sends ``setting_changed``, on which Django
    (5.2: django.test.signals.storages_changed) drops its cached storages and resets ``default_storage``."""
    if request.param == "filesystem":
        settings.STORAGES = {
            **django_settings.STORAGES,
            "default": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(tmp_path), "base_url": None},
            },
        }
        yield ("filesystem", tmp_path)
        return
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"studio-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS)
    client.create_bucket(Bucket=bucket)
    settings.STORAGES = {
        **django_settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": endpoint,
                "access_key": "testing",
                "secret_key": "testing",
                "region_name": "us-east-1",
                "addressing_style": "path",
                "default_acl": "private",
                "querystring_auth": True,
                "file_overwrite": False,
            },
        },
    }
    yield ("s3", (client, bucket))
