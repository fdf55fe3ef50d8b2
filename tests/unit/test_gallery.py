"""The gallery: newest first, keyset pages of constant cost, private images, reproduce."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image

from gallery.models import Asset
from gallery.pngmeta import png_with_provenance, read_provenance

pytestmark = pytest.mark.django_db

PARAMS = {
    "prompt": "a red circle",
    "negative_prompt": "",
    "model": "demo",
    "width": 64,
    "height": 64,
    "steps": 20,
    "guidance_scale": 5.0,
    "seed": 1,
    "scheduler": "Euler",
    "num_images": 1,
    "mode": "txt2img",
}


def make_assets(team, n: int) -> list[Asset]:
    now = timezone.now()
    return [
        Asset.objects.create(
            project=team["project"],
            file=f"assets/x/{i}.png",
            width=64,
            height=64,
            seed=i,
            prompt=f"prompt number {i}",
            params=dict(PARAMS, seed=i),
            model_id="demo",
            model_name="Demo",
            model_sha256="0" * 64,
            created_by=team["bob"],
            created_at=now - timedelta(seconds=n - i),
        )
        for i in range(n)
    ]


def test_gallery_pages_are_newest_first_with_constant_queries(client, team, django_assert_max_num_queries):
    assets = make_assets(team, 30)
    client.force_login(team["vera"])
    # session, user, project, 3 role checks, assets, favourites, the filter bar's members and boards, unread
    with django_assert_max_num_queries(11):
        first = client.get("/p/poster/gallery/")
    shown = [str(a.id) for a in first.context["assets"]]
    assert shown == [str(a.id) for a in reversed(assets)][:24]
    cursor = first.context["next_cursor"]
    with django_assert_max_num_queries(11):
        second = client.get(f"/p/poster/gallery/?cursor={cursor}")
    assert [str(a.id) for a in second.context["assets"]] == [str(a.id) for a in reversed(assets)][24:]
    assert second.context["next_cursor"] is None
    assert client.get("/p/poster/gallery/?cursor=garbage").status_code == 200


def test_the_asset_api_pages_filters_and_rejects_bad_input(client, team):
    make_assets(team, 35)
    client.force_login(team["bob"])
    page = client.get("/api/v1/projects/poster/assets").json()
    assert len(page["results"]) == 30
    rest = client.get(f"/api/v1/projects/poster/assets?cursor={page['next']}").json()
    assert len(rest["results"]) == 5
    assert rest["next"] is None
    assert [a["seed"] for a in client.get("/api/v1/projects/poster/assets?q=number 7").json()["results"]] == [
        7
    ]
    assert client.get("/api/v1/projects/poster/assets?status=draft").json()["results"]
    assert client.get("/api/v1/projects/poster/assets?status=approved").json()["results"] == []
    assert client.get("/api/v1/projects/poster/assets?status=lost").status_code == 400
    assert client.get("/api/v1/projects/poster/assets?cursor=%%%").status_code == 400


def test_images_are_served_privately_to_members_only(client, team):
    [asset] = make_assets(team, 1)
    png = png_with_provenance(
        Image.new("RGB", (64, 64), "blue"), PARAMS, {"model_name": "Demo", "model_sha256": "a" * 64}
    )
    asset.file.save("x.png", ContentFile(png), save=True)
    client.force_login(team["vera"])
    for url in (f"/api/v1/assets/{asset.id}/image", f"/assets/{asset.id}/image.png"):
        response = client.get(url)
        assert response.status_code == 200
        assert response["Content-Type"] == "image/png"
        assert "private" in response["Cache-Control"]
        assert b"".join(response.streaming_content) == png
    client.force_login(team["charlie"])
    assert client.get(f"/api/v1/assets/{asset.id}/image").status_code == 404


def test_png_text_chunks_carry_the_parameters_for_other_tools():
    png = png_with_provenance(
        Image.new("RGB", (8, 8)),
        dict(PARAMS, negative_prompt="blurry", seed=99),
        {"model_name": "Demo", "model_sha256": "abcdef0123456789"},
    )
    meta = read_provenance(png)
    assert meta["parameters"].splitlines() == [
        "a red circle",
        "Negative prompt: blurry",
        "Steps: 20, Sampler: Euler, CFG scale: 5.0, Seed: 99, Size: 64x64, Model hash: abcdef0123, "
        "Model: Demo",
    ]
    assert meta["studio"]["params"]["seed"] == 99


def test_reproduce_prefills_the_form_with_the_assets_parameters(client, team, demo_model_dir):
    [asset] = make_assets(team, 1)
    client.force_login(team["bob"])
    page = client.get(f"/p/poster/?from={asset.id}")
    initial = json.loads(page.context["initial_json"])
    assert initial["seed"] == 0
    assert initial["prompt"] == "a red circle"
    assert initial["num_images"] == 1
    assert json.loads(client.get("/p/poster/?from=nonsense").context["initial_json"]) == {}


def test_the_asset_page_shows_provenance_and_reproduce_only_to_generators(client, team):
    [asset] = make_assets(team, 1)
    client.force_login(team["bob"])
    page = client.get(f"/assets/{asset.id}/").content.decode()
    assert "0" * 64 in page
    assert 'id="reproduce"' in page
    client.force_login(team["vera"])
    assert 'id="reproduce"' not in client.get(f"/assets/{asset.id}/").content.decode()
