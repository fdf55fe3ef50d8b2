"""Generation modes: image to image, inpainting, variations and upscales, each from a stored image through the
worker and the tiny demo model to a stored asset that records where it came from; every mode's bad input is a
400 naming the field."""

from __future__ import annotations

import base64
import io
import json

import pytest
from django.core.cache import cache
from PIL import Image, ImageDraw

from gallery.models import Asset
from gallery.serializers import asset_to_dict
from generation import services
from generation.models import Job
from generation.tasks import run_job
from generation.worker import JobMonitor
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_broker(monkeypatch, demo_model_dir):
    sent: list[str] = []
    monkeypatch.setattr(services, "enqueue", lambda job_id, queue: sent.append(str(job_id)))
    cache.clear()
    return sent


@pytest.fixture
def steps_seen(monkeypatch):
    """Every (step, total) the diffusion loop reports."""
    seen: list[tuple[int, int]] = []
    original = JobMonitor.on_step

    def on_step(self, step, total):
        seen.append((step, total))
        original(self, step, total)

    monkeypatch.setattr(JobMonitor, "on_step", on_step)
    return seen


def start_image(team, size=(64, 64), **kwargs):
    """Bob's stored picture: left half red, right half blue."""
    asset = factories.asset(team["project"], team["bob"], **kwargs)
    image = Image.new("RGB", size, (200, 40, 40))
    ImageDraw.Draw(image).rectangle([size[0] // 2, 0, size[0], size[1]], fill=(30, 60, 220))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    from django.core.files.base import ContentFile

    asset.file.save(f"{asset.id}.png", ContentFile(buffer.getvalue()), save=False)
    asset.width, asset.height = size
    asset.save()
    return asset


def mask_url(size=(64, 64), box=(0, 0, 24, 64), mode="RGB", fmt="PNG") -> str:
    mask = Image.new(mode, size, 0)
    if box:
        ImageDraw.Draw(mask).rectangle(box, fill=(255, 255, 255) if mode == "RGB" else 255)
    buffer = io.BytesIO()
    mask.save(buffer, format=fmt)
    kind = "png" if fmt == "PNG" else "jpeg"
    return f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode()


def pixels(asset: Asset) -> Image.Image:
    with asset.file.open("rb") as fh:
        data = fh.read()
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def create(team, body, user="bob"):
    return services.do_create_job(team[user], team["project"], {"prompt": "a red circle", "seed": 3, **body})


def test_image_to_image_runs_fewer_steps_and_records_its_parent(team, steps_seen):
    start = start_image(team)
    job = create(team, {"mode": "img2img", "init_asset": str(start.id), "steps": 8, "strength": 0.5})
    assert job.params["mode"] == "img2img"
    assert job.params["strength"] == 0.5
    assert (job.params["width"], job.params["height"]) == (64, 64)  # the start image's size
    assert job.progress_total == 4
    assert run_job(str(job.id)) == "succeeded"

    assert [step for step, _ in steps_seen] == [1, 2, 3, 4]
    assert {total for _, total in steps_seen} == {4}
    asset = Asset.objects.get(job=job)
    assert asset.parent_id == start.id
    assert asset.kind == "generated"
    assert not asset.mask
    image = pixels(asset)
    assert image.size == (64, 64)
    assert "Denoising strength: 0.5" in image.text["parameters"]
    studio = json.loads(image.text["studio"])
    assert studio["parent"] == str(start.id)
    assert studio["params"]["mode"] == "img2img"
    data = asset_to_dict(asset)
    assert data["parent"] == str(start.id)
    assert data["kind"] == "generated"
    assert data["mask_url"] is None
    assert data["params"]["init_asset"] == str(start.id)


def test_a_batch_from_one_start_image_gives_each_its_own_seed(team):
    start = start_image(team)
    job = create(team, {"mode": "img2img", "init_asset": str(start.id), "steps": 4, "num_images": 2})
    assert run_job(str(job.id)) == "succeeded"
    assets = list(Asset.objects.filter(job=job).order_by("index"))
    assert [a.seed for a in assets] == [3, 4]
    assert all(a.parent_id == start.id for a in assets)
    assert pixels(assets[0]).tobytes() != pixels(assets[1]).tobytes()


def test_the_same_seed_reproduces_the_same_image_from_the_same_start(team):
    """The two jobs share one pipeline call (cross-user batching takes the queued second with the first),
    and each gets the image it would get alone."""
    start = start_image(team)
    body = {"mode": "img2img", "init_asset": str(start.id), "steps": 4, "strength": 0.75}
    first, second = create(team, body), create(team, body)
    assert run_job(str(first.id)) == "succeeded"
    second.refresh_from_db()
    assert second.status == "succeeded"
    assert run_job(str(second.id)) == "skipped"
    assert pixels(Asset.objects.get(job=first)).tobytes() == pixels(Asset.objects.get(job=second)).tobytes()


def test_inpainting_repaints_only_the_masked_area_and_keeps_the_mask(team, client, steps_seen):
    start = start_image(team)
    job = create(
        team,
        {"mode": "inpaint", "init_asset": str(start.id), "mask": mask_url(), "steps": 6, "strength": 1.0},
    )
    assert job.params["mask"]  # a stored file, read by the worker
    assert run_job(str(job.id)) == "succeeded"
    assert steps_seen[-1] == (6, 6)

    asset = Asset.objects.get(job=job)
    assert asset.parent_id == start.id
    assert asset.mask
    with asset.mask.open("rb") as fh:
        stored_mask = Image.open(io.BytesIO(fh.read())).convert("L")
    assert stored_mask.size == (64, 64)
    assert stored_mask.getpixel((5, 30)) == 255
    assert stored_mask.getpixel((50, 30)) == 0

    result, original = pixels(asset).convert("RGB"), pixels(start).convert("RGB")
    # Far from the mask's edge the kept part is the start image's own pixels; the painted part is new.
    assert result.crop((32, 0, 64, 64)).tobytes() == original.crop((32, 0, 64, 64)).tobytes()
    assert result.crop((0, 0, 20, 64)).tobytes() != original.crop((0, 0, 20, 64)).tobytes()

    data = asset_to_dict(asset)
    assert data["mask_url"] == f"/api/v1/assets/{asset.id}/mask"
    client.force_login(team["vera"])  # a viewer sees the mask like the image
    response = client.get(data["mask_url"])
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    client.force_login(team["charlie"])
    assert client.get(data["mask_url"]).status_code == 404
    assert client.get(f"/assets/{asset.id}/mask.png").status_code == 404


def test_a_mask_of_another_size_is_resized_to_the_start_image(team):
    start = start_image(team)
    job = create(
        team,
        {
            "mode": "inpaint",
            "init_asset": str(start.id),
            "mask": mask_url((16, 16), (0, 0, 5, 16)),
            "steps": 2,
        },
    )
    assert run_job(str(job.id)) == "succeeded"
    asset = Asset.objects.get(job=job)
    with asset.mask.open("rb") as fh:
        assert Image.open(io.BytesIO(fh.read())).size == (64, 64)


@pytest.mark.parametrize(("kind", "strength"), [("subtle", 0.3), ("strong", 0.6)])
def test_variations_keep_the_prompt_and_take_a_new_seed(team, kind, strength):
    start = start_image(team, prompt="a blue square")
    job = services.do_create_job(
        team["bob"],
        team["project"],
        {"mode": "variation", "init_asset": str(start.id), "variation": kind, "steps": 10},
    )
    assert job.params["prompt"] == "a blue square"
    assert job.params["strength"] == strength
    assert job.params["variation"] == kind
    assert job.progress_total == int(10 * strength)
    assert run_job(str(job.id)) == "succeeded"
    asset = Asset.objects.get(job=job)
    assert asset.parent_id == start.id
    assert asset.prompt == "a blue square"


@pytest.mark.parametrize("scale", [2, 4])
def test_upscaling_makes_the_image_bigger(team, scale):
    start = start_image(team)
    job = create(team, {"mode": "upscale", "init_asset": str(start.id), "scale": scale, "steps": 4})
    assert job.params["strength"] == 0.3
    assert (job.params["width"], job.params["height"]) == (64 * scale, 64 * scale)
    assert run_job(str(job.id)) == "succeeded"
    asset = Asset.objects.get(job=job)
    assert (asset.width, asset.height) == (64 * scale, 64 * scale)
    assert pixels(asset).size == (64 * scale, 64 * scale)
    assert asset.parent_id == start.id


def test_an_uploaded_image_is_a_start_image(team, client):
    buffer = io.BytesIO()
    Image.new("RGB", (80, 48), "green").save(buffer, format="JPEG")
    buffer.seek(0)
    buffer.name = "photo.jpg"
    client.force_login(team["bob"])
    upload = client.post("/api/v1/projects/poster/uploads", {"image": buffer}).json()
    job = create(team, {"mode": "img2img", "init_asset": upload["id"], "steps": 3})
    assert (job.params["width"], job.params["height"]) == (80, 48)
    assert run_job(str(job.id)) == "succeeded"
    assert str(Asset.objects.get(job=job).parent_id) == upload["id"]


def test_a_start_image_deleted_before_the_job_runs_fails_it_clearly(team):
    start = start_image(team)
    job = create(team, {"mode": "img2img", "init_asset": str(start.id), "steps": 3})
    start.delete()
    assert run_job(str(job.id)) == "failed"
    job.refresh_from_db()
    assert job.error == "The start image was deleted before the job ran."


def test_a_deleted_parent_leaves_its_children(team):
    start = start_image(team)
    job = create(team, {"mode": "img2img", "init_asset": str(start.id), "steps": 2})
    assert run_job(str(job.id)) == "succeeded"
    from gallery.services import do_delete_asset

    do_delete_asset(team["alice"], start)
    child = Asset.objects.get(job=job)
    assert child.parent_id is None
    assert asset_to_dict(child)["parent"] is None


def test_models_list_their_modes(client, team):
    client.force_login(team["bob"])
    demo = next(m for m in client.get("/api/v1/models").json() if m["id"] == "demo")
    assert demo["modes"] == ["txt2img", "img2img", "inpaint", "outpaint", "variation", "upscale"]


# --- validation --


def post_job(client, body):
    return client.post("/api/v1/projects/poster/jobs", data=json.dumps(body), content_type="application/json")


@pytest.fixture
def world(team, client):
    """Bob (artist) signed in; his 64 px start image; a 128 px one; and an image of another project of
    Alice's where Bob is an artist too (he sees it, but it is not this project's)."""
    client.force_login(team["bob"])
    other = factories.project(team["alice"], "Other")
    factories.member(other, team["bob"], "artist")
    return {
        "start": str(start_image(team).id),
        "big": str(start_image(team, size=(128, 128)).id),
        "other": str(factories.asset(other, team["bob"]).id),
    }


INVALID = [
    ("mode", {"mode": "sketch"}, "Choose one of"),
    ("init_asset", {"mode": "img2img"}, "Choose a start image."),
    ("init_asset", {"mode": "img2img", "init_asset": "not-an-id"}, "No such asset."),
    (
        "init_asset",
        {"mode": "img2img", "init_asset": "8c0f1d7e-0000-0000-0000-000000000000"},
        "No such asset.",
    ),
    ("init_asset", {"mode": "img2img", "init_asset": "{other}"}, "No such asset."),
    ("init_asset", {"mode": "img2img", "init_asset": 42}, "No such asset."),
    ("init_asset", {"init_asset": "{start}"}, "Text to image starts from no image"),
    ("strength", {"mode": "img2img", "init_asset": "{start}", "strength": 1.5}, "between 0 and 1"),
    ("strength", {"mode": "img2img", "init_asset": "{start}", "strength": "lots"}, "Enter a number."),
    ("strength", {"mode": "img2img", "init_asset": "{start}", "strength": 0.01, "steps": 20}, "raise the"),
    ("strength", {"strength": 0.5}, "Only used for"),
    ("variation", {"mode": "variation", "init_asset": "{start}", "variation": "wild"}, "subtle, strong"),
    ("variation", {"mode": "img2img", "init_asset": "{start}", "variation": "subtle"}, "Only used for"),
    ("scale", {"mode": "upscale", "init_asset": "{start}", "scale": 3}, "Choose one of: 2, 4"),
    ("scale", {"mode": "upscale", "init_asset": "{big}", "scale": 4}, "at most 256 × 256"),
    ("scale", {"mode": "img2img", "init_asset": "{start}", "scale": 2}, "Only used for"),
    ("width", {"mode": "upscale", "init_asset": "{start}", "width": 128}, "times the scale"),
    ("width", {"mode": "img2img", "init_asset": "{start}", "width": 100}, "multiple of 8"),
    ("mask", {"mode": "inpaint", "init_asset": "{start}"}, "Paint the area to repaint first."),
    ("mask", {"mode": "inpaint", "init_asset": "{start}", "mask": "__empty__"}, "Paint the area"),
    ("mask", {"mode": "inpaint", "init_asset": "{start}", "mask": "http://x/y.png"}, "PNG data URL"),
    ("mask", {"mode": "inpaint", "init_asset": "{start}", "mask": "data:image/png;base64,%%%"}, "base64"),
    ("mask", {"mode": "inpaint", "init_asset": "{start}", "mask": "data:image/png;base64,aGVsbG8="}, "PNG"),
    ("mask", {"mode": "inpaint", "init_asset": "{start}", "mask": "__jpeg__"}, "PNG"),
    ("mask", {"mode": "img2img", "init_asset": "{start}", "mask": "__mask__"}, "Only used for inpainting"),
]


@pytest.mark.parametrize(
    ("field", "body", "message"), INVALID, ids=[f"{f}:{json.dumps(b)}"[:60] for f, b, _ in INVALID]
)
def test_each_invalid_mode_field_is_a_400_naming_it(client, world, field, body, message):
    body = {
        k: (v.format(**world) if isinstance(v, str) and v.startswith("{") else v) for k, v in body.items()
    }
    special = {"__empty__": mask_url(box=None), "__jpeg__": mask_url(fmt="JPEG"), "__mask__": mask_url()}
    if body.get("mask") in special:
        body["mask"] = special[body["mask"]]
    if field == "mask" and body.get("mask", "").startswith("data:image/jpeg"):
        body["mask"] = body["mask"].replace("data:image/jpeg", "data:image/png")
    response = post_job(client, {"prompt": "a red circle", **body})
    assert response.status_code == 400, response.content
    data = response.json()
    assert field in data["errors"], data
    assert message in " ".join(data["errors"][field]), data
    assert Job.objects.count() == 0


def test_a_viewer_cannot_start_from_an_image_either(client, world, team):
    client.force_login(team["vera"])
    response = post_job(client, {"prompt": "x", "mode": "img2img", "init_asset": world["start"]})
    assert response.status_code == 403


def test_several_bad_fields_are_reported_together(client, world):
    response = post_job(
        client, {"prompt": "", "mode": "inpaint", "init_asset": world["start"], "strength": 2}
    )
    assert response.status_code == 400
    assert {"prompt", "mask", "strength"} <= set(response.json()["errors"])


def test_a_start_image_larger_than_the_model_makes_is_fitted(client, world, team):
    huge = start_image(team, size=(400, 200))
    response = post_job(client, {"prompt": "x", "mode": "img2img", "init_asset": str(huge.id), "steps": 2})
    assert response.status_code == 201, response.content
    params = response.json()["params"]
    assert (params["width"], params["height"]) == (256, 128)


# --- pages --


def test_the_asset_page_links_to_the_parent_and_shows_the_mask(client, team):
    start = start_image(team)
    job = create(team, {"mode": "inpaint", "init_asset": str(start.id), "mask": mask_url(), "steps": 2})
    assert run_job(str(job.id)) == "succeeded"
    child = Asset.objects.get(job=job)
    client.force_login(team["vera"])
    page = client.get(f"/assets/{child.id}/").content.decode()
    assert "Made from" in page
    assert f'href="/assets/{start.id}/"' in page
    assert f'src="/assets/{child.id}/mask.png"' in page
    assert 'id="inpaint"' not in page  # viewers do not generate
    assert client.get(f"/assets/{child.id}/mask.png").status_code == 200


def test_the_asset_page_opens_the_generate_page_prefilled(client, team):
    start = start_image(team)
    client.force_login(team["bob"])
    page = client.get(f"/assets/{start.id}/").content.decode()
    link = f"/p/poster/?init={start.id}&amp;mode=inpaint"
    assert link in page
    assert "Upscale ×2" in page
    generate = client.get(f"/p/poster/?init={start.id}&mode=inpaint")
    initial = json.loads(generate.context["initial_json"])
    assert initial["mode"] == "inpaint"
    assert initial["init_asset"]["id"] == str(start.id)
    assert initial["init_asset"]["image_url"] == f"/assets/{start.id}/image.png"


def test_the_generate_page_says_when_a_start_image_is_not_available(client, team, world):
    page = client.get(f"/p/poster/?init={world['other']}&mode=img2img")
    assert page.status_code == 200
    assert "That start image is not available" in page.content.decode()
    assert "init_asset" not in json.loads(page.context["initial_json"])
