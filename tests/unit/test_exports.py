"""Exports, deletion and thumbnails: Alice (lead) exports and deletes, Bob (artist) and Vera (viewer) may
only look, and Charlie sees nothing of the project."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest
from asgiref.sync import async_to_sync
from django.core.files.storage import default_storage
from django.http import StreamingHttpResponse
from django.test import AsyncClient
from django.utils import timezone
from PIL import Image

from gallery import exports, services
from gallery.models import Asset, AssetStatus
from generation.models import Job
from studio.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db

PARAMS = {
    "prompt": "a red circle",
    "negative_prompt": "",
    "width": 320,
    "height": 200,
    "steps": 20,
    "guidance_scale": 5.0,
    "seed": 1,
    "scheduler": "Euler",
    "num_images": 1,
    "mode": "txt2img",
}


def make_job_assets(project, author, n: int = 1, *, size=(320, 200), noise: bool = False) -> list[Asset]:
    """Assets made the way a finished job makes them (PNG with provenance + thumbnail in storage)."""
    job = Job.objects.create(
        project=project,
        created_by=author,
        model_id="demo",
        queue="gpu",
        params=dict(PARAMS, width=size[0], height=size[1], num_images=n),
        progress_total=20,
    )
    if noise:  # incompressible, so the zip is large enough to come in several chunks
        images = [Image.effect_noise(size, 100).convert("RGB") for _ in range(n)]
    else:
        images = [Image.new("RGB", size, (200, 30 + i, 40)) for i in range(n)]
    return services.do_create_job_assets(
        job, images, list(range(1, n + 1)), model_name="Demo", model_sha256="ab" * 32
    )


def stored_bytes(name: str) -> bytes:
    with default_storage.open(name, "rb") as f:
        return f.read()


def same_picture(exported: bytes, stored: bytes) -> bool:
    """An exported PNG is the stored one signed again: the same pixels and the same text chunks."""
    with Image.open(io.BytesIO(exported)) as a, Image.open(io.BytesIO(stored)) as b:
        return a.tobytes() == b.tobytes() and a.text == b.text


def read_zip(response) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


# --- thumbnails --


def test_each_new_asset_gets_a_small_jpeg_thumbnail_beside_its_png(team):
    [asset] = make_job_assets(team["project"], team["bob"], size=(640, 400))
    assert asset.thumbnail.name == asset.file.name.removesuffix(".png") + ".thumb.jpg"
    with Image.open(io.BytesIO(stored_bytes(asset.thumbnail.name))) as thumb:
        assert thumb.format == "JPEG"
        assert thumb.size == (256, 160)
    assert asset.file_size == len(stored_bytes(asset.file.name))


def test_thumbnails_are_served_to_members_only(client, team):
    [asset] = make_job_assets(team["project"], team["bob"])
    client.force_login(team["vera"])
    for url in (f"/assets/{asset.id}/thumb.jpg", f"/api/v1/assets/{asset.id}/thumbnail"):
        response = client.get(url)
        assert response.status_code == 200
        assert response["Content-Type"] == "image/jpeg"
        assert "private" in response["Cache-Control"]
        assert b"".join(response.streaming_content) == stored_bytes(asset.thumbnail.name)
    assert client.get(f"/api/v1/assets/{asset.id}").json()["thumbnail_url"] == (
        f"/api/v1/assets/{asset.id}/thumbnail"
    )
    client.force_login(team["charlie"])
    assert client.get(f"/assets/{asset.id}/thumb.jpg").status_code == 404
    assert client.get(f"/api/v1/assets/{asset.id}/thumbnail").status_code == 404
    client.logout()
    assert client.get(f"/api/v1/assets/{asset.id}/thumbnail").status_code == 401
    assert client.get(f"/assets/{asset.id}/thumb.jpg").status_code == 302


def test_older_assets_without_a_thumbnail_fall_back_to_the_full_image(client, team):
    [asset] = make_job_assets(team["project"], team["bob"])
    Asset.objects.filter(id=asset.id).update(thumbnail="")
    client.force_login(team["vera"])
    response = client.get(f"/assets/{asset.id}/thumb.jpg")
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == stored_bytes(asset.file.name)


def test_the_gallery_grid_shows_thumbnails(client, team):
    [asset] = make_job_assets(team["project"], team["bob"])
    client.force_login(team["vera"])
    page = client.get("/p/poster/gallery/").content.decode()
    assert f"/assets/{asset.id}/thumb.jpg" in page
    assert f"/assets/{asset.id}/image.png" not in page


# --- export --


@pytest.mark.parametrize(
    ("who", "status"), [("charlie", 404), ("vera", 403), ("bob", 403), ("alice", 200), ("root", 200)]
)
def test_only_leads_and_admins_export(client, team, who, status):
    client.force_login(team[who])
    assert client.get("/api/v1/projects/poster/export").status_code == status


def test_the_export_button_is_for_leads(client, team):
    client.force_login(team["alice"])
    assert 'id="export-approved"' in client.get("/p/poster/gallery/").content.decode()
    client.force_login(team["bob"])
    assert 'id="export-approved"' not in client.get("/p/poster/gallery/").content.decode()


def test_an_export_holds_each_approved_png_with_a_provenance_sidecar(client, team):
    assets = make_job_assets(team["project"], team["bob"], 3)
    approved = assets[:2]
    Asset.objects.filter(id__in=[a.id for a in approved]).update(status=AssetStatus.APPROVED)
    client.force_login(team["alice"])
    response = client.get("/api/v1/projects/poster/export?status=approved")
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "application/zip"
    today = f"{timezone.now():%Y-%m-%d}"
    assert response["Content-Disposition"] == f'attachment; filename="poster-approved-{today}.zip"'
    assert response["X-Studio-Export-Files"] == "2"
    assert int(response["X-Studio-Export-Bytes"]) >= sum(a.file_size for a in approved)
    archive = read_zip(response)
    assert archive.testzip() is None
    folder = f"poster-approved-{today}"
    assert sorted(archive.namelist()) == sorted(
        f"{folder}/{a.id}.{ext}" for a in approved for ext in ("png", "json")
    )
    for asset in approved:
        png = archive.read(f"{folder}/{asset.id}.png")
        assert same_picture(png, stored_bytes(asset.file.name))
        meta = json.loads(archive.read(f"{folder}/{asset.id}.json"))
        assert meta["id"] == str(asset.id)
        assert meta["job"] == str(asset.job_id)
        assert meta["model_sha256"] == "ab" * 32
        assert meta["params"]["seed"] == asset.seed
        assert meta["status"] == "approved"
        assert meta["created_by"] == "bob"
        assert {"image_url", "thumbnail_url", "prompt", "model", "width", "height", "created_at"} <= set(meta)
        assert meta["file"] == {
            "name": f"{asset.id}.png",
            "bytes": len(png),
            "sha256": hashlib.sha256(png).hexdigest(),
        }
        assert meta["reviews"] == exports.review_history(asset)
    event = AuditEvent.objects.get(action="asset.export")
    assert (event.actor_name, event.project_slug) == ("alice", "poster")
    assert event.details == {"count": 2, "status": "approved"}


def test_export_defaults_to_approved_and_takes_all_or_a_selection(client, team):
    assets = make_job_assets(team["project"], team["bob"], 3)
    client.force_login(team["root"])
    assert client.get("/api/v1/projects/poster/export")["X-Studio-Export-Files"] == "0"
    assert read_zip(client.get("/api/v1/projects/poster/export")).namelist() == []
    assert client.get("/api/v1/projects/poster/export?status=all")["X-Studio-Export-Files"] == "3"
    assert client.get("/api/v1/projects/poster/export?status=draft")["X-Studio-Export-Files"] == "3"
    ids = f"{assets[0].id},{assets[2].id}"
    response = client.get(f"/api/v1/projects/poster/export?ids={ids}")
    assert response["X-Studio-Export-Files"] == "2"
    assert "poster-selected-" in response["Content-Disposition"]
    names = read_zip(response).namelist()
    assert {n.rsplit("/", 1)[1] for n in names} == {
        f"{a.id}.{ext}" for a in (assets[0], assets[2]) for ext in ("png", "json")
    }
    response = client.get(f"/api/v1/projects/poster/export?ids={ids}&status=approved")
    assert response["X-Studio-Export-Files"] == "0"


def test_export_rejects_bad_input_with_400(client, team):
    [asset] = make_job_assets(team["project"], team["bob"])
    other = factories.project(team["charlie"], name="Other")
    [foreign] = make_job_assets(other, team["charlie"])
    client.force_login(team["root"])
    for query in ("status=lost", "ids=nonsense", "ids=,", f"ids={asset.id},{foreign.id}"):
        response = client.get(f"/api/v1/projects/poster/export?{query}")
        assert response.status_code == 400, query
        assert response.json()["error"]
    assert not AuditEvent.objects.filter(action="asset.export").exists()


def test_the_zip_is_streamed_in_chunks_not_built_whole(client, team):
    assets = make_job_assets(team["project"], team["bob"], 4, size=(256, 256), noise=True)
    client.force_login(team["alice"])
    response = client.get("/api/v1/projects/poster/export?status=all")
    chunks = list(response.streaming_content)
    assert len(chunks) >= 4
    assert max(len(c) for c in chunks) < exports.CHUNK_SIZE * 2 + 200_000
    assert len(zipfile.ZipFile(io.BytesIO(b"".join(chunks))).namelist()) == 2 * len(assets)
    # The generator itself, with small chunks: many pieces, each about the chunk size.
    plan = services.check_export(team["alice"], team["project"], "all", None)
    small = list(exports.zip_chunks(plan, "x.zip", chunk_size=16 * 1024))
    assert len(small) > 20
    assert zipfile.ZipFile(io.BytesIO(b"".join(small))).testzip() is None


def test_under_asgi_the_zip_is_an_async_stream(team):
    make_job_assets(team["project"], team["bob"], 2)
    client = AsyncClient()

    async def fetch() -> tuple[bool, bytes]:
        await client.aforce_login(team["alice"])
        response = await client.get("/api/v1/projects/poster/export?status=all")
        return response.is_async, b"".join([chunk async for chunk in response.streaming_content])

    is_async, body = async_to_sync(fetch)()
    assert is_async
    assert len(zipfile.ZipFile(io.BytesIO(body)).namelist()) == 4


# --- deletion --


@pytest.mark.parametrize(("who", "status"), [("charlie", 404), ("vera", 403), ("bob", 403)])
def test_only_leads_and_admins_delete(client, team, who, status):
    [asset] = make_job_assets(team["project"], team["bob"])
    client.force_login(team[who])
    assert client.delete(f"/api/v1/assets/{asset.id}").status_code == status
    assert client.post(f"/assets/{asset.id}/delete/").status_code == status
    assert Asset.objects.filter(id=asset.id).exists()
    assert default_storage.exists(asset.file.name)
    assert default_storage.exists(asset.thumbnail.name)


def test_deleting_removes_the_row_then_the_files_and_is_audited(
    client, team, django_capture_on_commit_callbacks, monkeypatch
):
    from generation import realtime

    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(realtime, "send_project_event", lambda slug, payload: sent.append((slug, payload)))
    [asset] = make_job_assets(team["project"], team["bob"])
    client.force_login(team["alice"])
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.delete(f"/api/v1/assets/{asset.id}")
    assert response.status_code == 204
    assert len(callbacks) == 2  # the files go, then open pages of the project hear of it
    assert sent == [("poster", {"type": "asset.deleted", "asset": {"id": str(asset.id)}})]
    assert not Asset.objects.filter(id=asset.id).exists()
    assert not default_storage.exists(asset.file.name)
    assert not default_storage.exists(asset.thumbnail.name)
    event = AuditEvent.objects.get(action="asset.delete")
    assert (event.actor_name, event.target, event.project_slug) == ("alice", f"asset:{asset.id}", "poster")
    assert client.delete(f"/api/v1/assets/{asset.id}").status_code == 404


def test_files_stay_until_the_deletion_commits(client, team, django_capture_on_commit_callbacks):
    [asset] = make_job_assets(team["project"], team["bob"])
    client.force_login(team["root"])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert client.delete(f"/api/v1/assets/{asset.id}").status_code == 204
    assert default_storage.exists(asset.file.name)
    assert len(callbacks) == 2  # nothing is announced before the commit either


def test_the_asset_page_deletes_after_confirmation(client, team, django_capture_on_commit_callbacks):
    [asset] = make_job_assets(team["project"], team["bob"])
    client.force_login(team["bob"])
    assert 'id="delete-asset"' not in client.get(f"/assets/{asset.id}/").content.decode()
    client.force_login(team["alice"])
    page = client.get(f"/assets/{asset.id}/").content.decode()
    assert 'id="delete-asset"' in page
    assert f'action="/assets/{asset.id}/delete/"' in page
    assert client.get(f"/assets/{asset.id}/delete/").status_code == 405
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/assets/{asset.id}/delete/")
    assert response.status_code == 302
    assert response["Location"] == "/p/poster/gallery/"
    assert not Asset.objects.filter(id=asset.id).exists()
    assert not default_storage.exists(asset.file.name)


def test_sidecars_carry_the_review_history_in_constant_queries(client, team, django_assert_max_num_queries):
    from gallery.models import Review

    assets = make_job_assets(team["project"], team["bob"], 3)
    for asset in assets:
        Review.objects.create(asset=asset, decision="changes_requested", comment="bluer", by=team["alice"])
        Review.objects.create(asset=asset, decision="approve", comment="", by=team["root"])
    client.force_login(team["alice"])
    with django_assert_max_num_queries(14):
        response = client.get("/api/v1/projects/poster/export?status=all")
        archive = read_zip(response)
    for asset in assets:
        [name] = [n for n in archive.namelist() if n.endswith(f"{asset.id}.json")]
        reviews = json.loads(archive.read(name))["reviews"]
        assert [(r["decision"], r["comment"], r["by"]) for r in reviews] == [
            ("changes_requested", "bluer", "alice"),
            ("approve", "", "root"),
        ]
        assert all(r["at"] for r in reviews)


def test_the_openapi_schema_describes_export_delete_and_thumbnails(client, team):
    client.force_login(team["bob"])
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert "200" in paths["/projects/{slug}/export"]["get"]["responses"]
    assert "204" in paths["/assets/{id}"]["delete"]["responses"]
    assert "200" in paths["/assets/{id}/thumbnail"]["get"]["responses"]
