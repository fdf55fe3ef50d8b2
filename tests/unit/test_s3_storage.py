"""The storage path end to end on both backends: the filesystem, and S3 spoken over real HTTP to a local
S3-compatible server (moto's, on 127.0.0.1 — no test reaches the internet). Assets are written privately,
served only through the permission-checked views, exported, and deleted with their files."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from django.core.files.storage import default_storage

from gallery.models import Asset
from tests.unit.test_exports import make_job_assets, same_picture

# The ``backend`` fixture (filesystem, or S3 on a local moto server) is in tests/unit/conftest.py.


def stored_names(backend) -> set[str]:
    kind, where = backend
    if kind == "filesystem":
        return {str(p.relative_to(where)) for p in Path(where).rglob("*") if p.is_file()}
    client, bucket = where
    return {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_assets_live_privately_in_the_storage_and_leave_it_when_deleted(
    client, team, backend, django_capture_on_commit_callbacks
):
    kind, where = backend
    assert default_storage.__class__.__name__ == ("S3Storage" if kind == "s3" else "FileSystemStorage")
    [asset] = make_job_assets(team["project"], team["bob"], size=(300, 300))
    assert stored_names(backend) == {asset.file.name, asset.thumbnail.name}
    if kind == "s3":
        s3, bucket = where
        for key in (asset.file.name, asset.thumbnail.name):
            grants = s3.get_object_acl(Bucket=bucket, Key=key)["Grants"]
            assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]  # the owner only: not public-read
            assert all("AllUsers" not in str(g["Grantee"].get("URI", "")) for g in grants)
        png = s3.get_object(Bucket=bucket, Key=asset.file.name)["Body"].read()
    else:
        png = (where / asset.file.name).read_bytes()

    # Served through the permission-checked views only.
    client.force_login(team["vera"])
    assert b"".join(client.get(f"/assets/{asset.id}/image.png").streaming_content) == png
    thumb = b"".join(client.get(f"/api/v1/assets/{asset.id}/thumbnail").streaming_content)
    assert thumb.startswith(b"\xff\xd8")  # JPEG
    client.force_login(team["charlie"])
    assert client.get(f"/assets/{asset.id}/image.png").status_code == 404

    # Exported from the same storage, streamed.
    client.force_login(team["alice"])
    response = client.get("/api/v1/projects/poster/export?status=all")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    [png_name] = [n for n in archive.namelist() if n.endswith(".png")]
    assert same_picture(archive.read(png_name), png)

    # Deleted: the row, then both files.
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/v1/assets/{asset.id}").status_code == 204
    assert not Asset.objects.filter(id=asset.id).exists()
    assert stored_names(backend) == set()
