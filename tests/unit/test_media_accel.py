"""Private images through nginx: with STUDIO_MEDIA_ACCEL the permission-checked views answer with
X-Accel-Redirect to the internal location (nginx streams the file); without it, or when the stored bytes are
not what the client gets, the view streams them."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings as django_settings
from django.core.files.storage import FileSystemStorage
from django.test import Client

from gallery import media
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(team):
    client = Client()
    client.force_login(team["alice"])
    return client


@pytest.mark.parametrize("kind", ["image", "thumbnail"])
def test_with_the_setting_the_views_answer_the_internal_location_and_no_bytes(
    settings, team, alice_client, kind
):
    settings.STUDIO_MEDIA_ACCEL = "/_media/"
    asset = factories.asset(team["project"], team["alice"])
    response = alice_client.get(f"/api/v1/assets/{asset.id}/{kind}")
    assert response.status_code == 200
    assert response["X-Accel-Redirect"] == f"/_media/files/{asset.file.name}"
    assert response.content == b""
    assert response["Content-Type"] == "image/png"
    assert response["Cache-Control"] == "private, max-age=3600"
    assert response["Content-Disposition"] == f'inline; filename="{asset.id}.png"'


def test_outsiders_never_get_the_internal_location(settings, team):
    settings.STUDIO_MEDIA_ACCEL = "/_media/"
    asset = factories.asset(team["project"], team["alice"])
    client = Client()
    client.force_login(team["charlie"])
    response = client.get(f"/assets/{asset.id}/image.png")
    assert response.status_code == 404 and "X-Accel-Redirect" not in response


def test_without_the_setting_the_view_streams_the_file(team, alice_client):
    asset = factories.asset(team["project"], team["alice"])
    response = alice_client.get(f"/assets/{asset.id}/image.png")
    assert "X-Accel-Redirect" not in response
    with asset.file.open("rb") as f:
        assert b"".join(response.streaming_content) == f.read()


def test_a_storage_that_transforms_its_bytes_is_always_streamed(settings, tmp_path):
    settings.STUDIO_MEDIA_ACCEL = "/_media/"

    class Encrypting(FileSystemStorage):
        transforms_content = True

    assert media.accel_path(FileSystemStorage(location=tmp_path), "a/b.png") == "/_media/files/a/b.png"
    assert media.accel_path(Encrypting(location=tmp_path), "a/b.png") is None
    assert media.accel_path(FileSystemStorage(location=tmp_path), "") is None


def test_names_are_quoted_for_the_header(settings, tmp_path):
    settings.STUDIO_MEDIA_ACCEL = "/_media/"
    assert (
        media.accel_path(FileSystemStorage(location=tmp_path), "a b/ü.png")
        == "/_media/files/a%20b/%C3%BC.png"
    )


def test_s3_objects_go_through_the_internal_location_with_a_url_signed_for_seconds(settings):
    pytest.importorskip("boto3")
    from storages.backends.s3 import S3Storage

    settings.STUDIO_MEDIA_ACCEL = "/_media/"
    settings.STUDIO_MEDIA_ACCEL_S3_SECONDS = 10
    storage = S3Storage(
        bucket_name="studio-media",
        endpoint_url="http://minio:9000",
        access_key="testing",
        secret_key="testing",
        region_name="us-east-1",
        addressing_style="path",
        signature_version="s3v4",
        querystring_auth=True,
    )
    name = f"assets/1/2026/12/{uuid.uuid4()}.png"
    path = media.accel_path(storage, name)
    assert path is not None
    location = urlsplit(path)
    assert location.path == f"/_media/s3/studio-media/{name}"
    query = parse_qs(location.query)
    assert query["X-Amz-Expires"] == ["10"]
    assert "X-Amz-Signature" in query
    virtual_hosted = S3Storage(
        bucket_name="b",
        endpoint_url="http://minio:9000",
        access_key="k",
        secret_key="s",
        addressing_style="virtual",
    )
    assert media.accel_path(virtual_hosted, name) is None, "only path-style URLs fit nginx's fixed upstream"


def test_the_setting_must_be_a_location_prefix(monkeypatch):
    import importlib

    from django.core.exceptions import ImproperlyConfigured

    import studio.settings

    monkeypatch.setenv("STUDIO_MEDIA_ACCEL", "_media")
    try:
        with pytest.raises(ImproperlyConfigured, match="location prefix"):
            importlib.reload(studio.settings)
    finally:
        monkeypatch.delenv("STUDIO_MEDIA_ACCEL")
        importlib.reload(studio.settings)
    assert django_settings.STUDIO_MEDIA_ACCEL == ""
