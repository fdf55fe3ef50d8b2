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


def make_asset(team, **fields) -> Asset:
    """A generated-looking asset row of Bob's (no image file), ``fields`` overriding the defaults."""
    defaults = {
        "project": team["project"],
        "file": "assets/x/0.png",
        "width": 64,
        "height": 64,
        "seed": 0,
        "prompt": "a red circle",
        "params": PARAMS,
        "model_id": "demo",
        "model_name": "Demo",
        "model_sha256": "0" * 64,
        "created_by": team["bob"],
    }
    return Asset.objects.create(**{**defaults, **fields})


def make_assets(team, n: int) -> list[Asset]:
    now = timezone.now()
    return [
        make_asset(
            team,
            file=f"assets/x/{i}.png",
            seed=i,
            prompt=f"prompt number {i}",
            params=dict(PARAMS, seed=i),
            created_at=now - timedelta(seconds=n - i),
        )
        for i in range(n)
    ]


def test_gallery_pages_are_newest_first_with_constant_queries(client, team, django_assert_num_queries):
    assets = make_assets(team, 30)
    client.force_login(team["vera"])
    # session, user, project with the role, assets with authors and stars, the filter bar's members and
    # boards, unread notifications
    with django_assert_num_queries(7):
        first = client.get("/p/poster/gallery/")
    shown = [str(a.id) for a in first.context["assets"]]
    assert shown == [str(a.id) for a in reversed(assets)][:24]
    cursor = first.context["next_cursor"]
    with django_assert_num_queries(7):
        second = client.get(f"/p/poster/gallery/?cursor={cursor}")
    assert [str(a.id) for a in second.context["assets"]] == [str(a.id) for a in reversed(assets)][24:]
    assert second.context["next_cursor"] is None
    assert client.get("/p/poster/gallery/?cursor=garbage").status_code == 200


def test_a_card_shows_its_image_facts_and_actions_with_every_value_escaped(client, team):
    from gallery.models import AssetKind, Favourite

    hostile = '<script>alert("x")</script> a very long prompt about a lighthouse at dusk ' * 3
    generated = make_asset(
        team,
        width=512,
        height=384,
        seed=4242,
        prompt=hostile,
        params=dict(PARAMS, prompt=hostile),
        model_name="Demo <b>model</b>",
        status="approved",
        created_at=timezone.make_aware(timezone.datetime(2026, 3, 7, 9, 5)),
    )
    upload = make_asset(
        team,
        kind=AssetKind.UPLOAD,
        file="assets/x/u.png",
        prompt="",
        params={"filename": "<img src=x onerror=alert(1)>.png"},
        model_id="",
        model_name="",
        model_sha256="",
    )
    Favourite.objects.create(user=team["bob"], asset=generated)
    client.force_login(team["bob"])
    page = client.get("/p/poster/gallery/").content.decode()
    card = page.split(f'data-asset-id="{generated.id}"', 1)[1].split('class="asset-card"', 1)[0]
    assert "<script>" not in page and "<b>model" not in page and "<img src=x" not in page
    assert f'href="/assets/{generated.id}/"' in card and f'src="/assets/{generated.id}/thumb.jpg"' in card
    assert 'width="512" height="384"' in card and 'class="tiny"' not in card
    shown_prompt = card.split('class="asset-prompt"', 1)[1].split(">", 1)[1].split("</p>", 1)[0]
    assert len(shown_prompt.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')) == 90
    assert shown_prompt.endswith("…") and shown_prompt.startswith("&lt;script&gt;")
    assert '<span class="badge status-approved">Approved</span>' in card
    assert "Demo &lt;b&gt;model&lt;/b&gt;" in card and "seed 4242" in card
    when = '<time datetime="2026-03-07T09:05:00+00:00" title="2026-03-07 09:05:00 UTC">Mar 7, 09:05</time>'
    assert when in card
    assert 'class="star on" aria-pressed="true"' in card and 'name="csrfmiddlewaretoken"' in card
    assert f'value="{generated.id}" form="submit-selection"' in card  # the artist may submit it
    upload_card = page.split(f'data-asset-id="{upload.id}"', 1)[1].split('class="asset-card"', 1)[0]
    assert "Uploaded · &lt;img src=x onerror=alert(1)&gt;.png" in upload_card and "seed" not in upload_card
    assert 'class="tiny"' in upload_card and 'class="star" aria-pressed="false"' in upload_card

    client.force_login(team["vera"])  # a viewer: stars, but no selection boxes
    viewer_page = client.get("/p/poster/gallery/").content.decode()
    assert 'form="submit-selection"' not in viewer_page and viewer_page.count('class="fav-form"') == 2
    partial = client.get("/p/poster/gallery/?partial=1").content.decode()
    assert partial.count('class="asset-card"') == 2 and "<html" not in partial


@pytest.mark.parametrize(
    ("who", "role", "export", "select"),
    [
        ("alice", "lead", True, True),
        ("bob", "artist", False, True),
        ("vera", "viewer", False, False),
        ("root", "lead", True, True),  # a site admin who is not a member acts as a lead
    ],
)
def test_the_gallery_page_shows_each_role_its_buttons(client, team, who, role, export, select):
    from studio.permissions import role_in

    make_assets(team, 1)
    assert role_in(team[who], team["project"]) == role
    client.force_login(team[who])
    page = client.get("/p/poster/gallery/").content.decode()
    assert f'role-badge role-{role}"' in page
    assert ('id="export-approved"' in page) is export
    assert ('form="submit-selection"' in page) is select


def test_the_gallery_is_not_found_for_outsiders_and_inactive_members(client, team):
    client.force_login(team["charlie"])
    assert client.get("/p/poster/gallery/").status_code == 404
    assert client.get("/p/nowhere/gallery/").status_code == 404
    team["bob"].is_active = False
    team["bob"].save()
    client.force_login(team["bob"])
    response = client.get("/p/poster/gallery/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


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
