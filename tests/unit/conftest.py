"""Fixtures shared by the unit tests of storage: each test runs on the filesystem and on S3."""

from __future__ import annotations

import uuid

import boto3
import pytest
from django.conf import settings as django_settings
from moto import server as moto_server

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
