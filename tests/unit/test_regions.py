"""Regional prompts: a prompt for a box or a painted mask of the picture, on top of the job's prompt. Bad
regions are 400s that say what to do; the demo model paints a red left half and a blue right half when asked
to; a later job without regions is untouched; jobs with the same regions share a call; SDXL's extra
conditioning is handled; the regions are recorded with the image."""

from __future__ import annotations

import base64
import collections
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from django.core.cache import cache
from PIL import Image, ImageDraw

from gallery import provenance
from gallery.models import Asset
from gallery.pngmeta import read_provenance
from generation import services
from generation.engine import registry
from generation.engine.evaluation import nearest_colour
from generation.models import Job
from generation.tasks import run_job
from tests import factories

LEFT_RED = "a small white circle on a red background"
RIGHT_BLUE = "a small white circle on a blue background"
BASE = "a small white circle"
HALVES = [{"box": [0, 0, 32, 64], "prompt": LEFT_RED}, {"box": [32, 0, 64, 64], "prompt": RIGHT_BLUE}]


def mask_url(size=(64, 64), box=(0, 0, 32, 64), mode="L") -> str:
    mask = Image.new(mode, size, 0)
    if box is not None:
        ImageDraw.Draw(mask).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=255)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def palette_names(image: Image.Image) -> np.ndarray:
    """Each pixel named by its nearest colour of the demo's palette, as the demo's evaluation names them."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    return np.array([[nearest_colour(pixel) for pixel in row] for row in rgb])


def halves(image: Image.Image) -> tuple[collections.Counter, collections.Counter]:
    names = palette_names(image)
    width = names.shape[1]
    return collections.Counter(names[:, : width // 2].ravel()), collections.Counter(
        names[:, width // 2 :].ravel()
    )


def left_red_right_blue(image: Image.Image) -> bool:
    """The left half's most common palette colour is red and covers at least 40% of it; the right half's
    is blue, at least 60%."""
    left, right = halves(image)
    (left_top, left_n), (right_top, right_n) = left.most_common(1)[0], right.most_common(1)[0]
    half = sum(left.values())
    return left_top == "red" and left_n >= 0.4 * half and right_top == "blue" and right_n >= 0.6 * half


def pixels(asset: Asset) -> Image.Image:
    with asset.file.open("rb") as fh:
        image = Image.open(io.BytesIO(fh.read()))
        image.load()
    return image.convert("RGB")


def post_job(client, body):
    return client.post("/api/v1/projects/poster/jobs", data=json.dumps(body), content_type="application/json")


@pytest.fixture
def queued(db, team, demo_model_dir, monkeypatch):
    """Jobs are stored but not sent to a broker: the test runs them."""
    monkeypatch.setattr(services, "enqueue", lambda job_id, queue: None)
    cache.clear()


@pytest.fixture
def trained(db, settings, tmp_path, monkeypatch):
    """The bundled, trained demo model as the studio's only model (the test settings ship none), jobs run
    by the test."""
    from generation.engine.training import BUNDLED_MODEL_DIR

    settings.MODELS_DIR = tmp_path / "models"
    settings.MODELS_DIR.mkdir()
    settings.STUDIO_BUNDLED_MODELS = {"demo": BUNDLED_MODEL_DIR}
    monkeypatch.setattr(services, "enqueue", lambda job_id, queue: None)
    cache.clear()


# --- the engine, with the bundled demo model --


def demo_request(seed: int, **params):
    from generation.engine.registry import load_model_info
    from generation.engine.runner import text_request
    from generation.engine.training import BUNDLED_MODEL_DIR

    return text_request(load_model_info(BUNDLED_MODEL_DIR), params.pop("prompt", BASE), seed=seed, **params)


def test_the_demo_model_paints_each_half_in_its_regions_colour():
    """Left half "… on a red background", right half "… on a blue background", the job's prompt naming no
    background (white). Measured on seeds 0–4: red is the left half's commonest colour on each (48–53% of its
    pixels), blue the right half's (85–89%); without the regions neither half has any red or blue."""
    from generation.engine.evaluation import _NoHooks
    from generation.engine.runner import generate

    regional = [generate(demo_request(seed, regions=HALVES), _NoHooks()).images[0] for seed in range(5)]
    assert sum(left_red_right_blue(image) for image in regional) >= 4
    plain = generate(demo_request(0), _NoHooks()).images[0]
    left, right = halves(plain)
    assert left["red"] < 100 and right["blue"] < 100, (left, right)


def test_a_mask_region_paints_what_a_box_region_of_the_same_area_paints():
    from generation.engine.evaluation import _NoHooks
    from generation.engine.runner import GenerationRequest, generate

    boxed = generate(demo_request(1, regions=HALVES), _NoHooks()).images[0]
    request = demo_request(1, regions=[{"mask_sha256": "x", "prompt": LEFT_RED}, HALVES[1]])
    left_mask = Image.new("L", (64, 64), 0)
    left_mask.paste(255, (0, 0, 32, 64))
    masked = generate(
        GenerationRequest(request.model, request.params, region_masks=(left_mask, None)), _NoHooks()
    ).images[0]
    assert masked.tobytes() == boxed.tobytes()


def test_several_images_of_one_call_each_follow_the_regions_as_they_would_alone():
    """Two images per call: each image's rows of the widened batch are its own (seed 0 and seed 1 alone
    make the same pictures), with guidance and without it (a scale of 1 runs one prediction per prompt)."""
    from generation.engine.evaluation import _NoHooks
    from generation.engine.runner import generate

    for guidance in (5.0, 1.0):
        pair = generate(demo_request(0, regions=HALVES, num_images=2, guidance_scale=guidance), _NoHooks())
        alone = [
            generate(demo_request(s, regions=HALVES, guidance_scale=guidance), _NoHooks()) for s in (0, 1)
        ]
        for made, single in zip(pair.images, alone, strict=True):
            difference = np.abs(
                np.asarray(made, dtype=np.int16) - np.asarray(single.images[0], dtype=np.int16)
            )
            assert difference.max() <= 2, guidance  # (batched kernels round a little differently)
    assert pair.images[0].tobytes() != pair.images[1].tobytes()


def test_a_job_without_regions_after_a_regional_one_makes_the_same_image_as_before():
    from generation.engine import runner
    from generation.engine.evaluation import _NoHooks
    from generation.engine.runner import generate

    before = generate(demo_request(7), _NoHooks()).images[0].tobytes()
    regional = generate(demo_request(7, regions=HALVES), _NoHooks()).images[0].tobytes()
    after = generate(demo_request(7), _NoHooks()).images[0].tobytes()
    assert regional != before
    assert after == before
    unet = runner.cache().get(demo_request(7).model).pipe.unet
    assert not unet._forward_pre_hooks and not unet._forward_hooks


def test_a_regional_call_that_fails_still_takes_its_hooks_off(monkeypatch):
    from generation.engine import pipelines, runner
    from generation.engine.evaluation import _NoHooks
    from generation.engine.runner import generate

    class Stop(Exception):
        pass

    class Failing(_NoHooks):
        def on_step(self, step, total):
            raise Stop

    with pytest.raises(Stop):
        generate(demo_request(2, regions=HALVES), Failing())
    unet = pipelines.denoiser(runner.cache().get(demo_request(2).model).pipe)
    assert not unet._forward_pre_hooks and not unet._forward_hooks


def test_previews_show_the_whole_picture_forming():
    from generation.engine.evaluation import _NoHooks
    from generation.engine.runner import generate

    class Watching(_NoHooks):
        previews: list = []

        def wants_preview(self, step, total):
            return True

        def on_preview(self, step, total, rgb):
            self.previews.append(rgb)

    watching = Watching()
    generate(demo_request(3, regions=HALVES, steps=6), watching)
    assert len(watching.previews) == 6
    last = np.asarray(watching.previews[-1])
    assert last.ndim == 3 and last.shape[-1] == 3  # one picture (height × width × RGB), not one per prompt
    assert last.shape[0] == last.shape[1]  # the whole square picture, not a region's part of it


def test_region_weights_blend_with_the_jobs_prompt_and_sum_to_one():
    from generation.engine.regions import BASE_SHARE, region_maps

    params = demo_request(0, regions=[{"box": [0, 0, 32, 64], "prompt": "a", "weight": 2.0}]).params
    base, regional = region_maps(params, (None,), 8, 8)
    assert np.allclose(base + regional.sum(axis=0), 1.0)
    assert np.allclose(base[:, 4:], 1.0)  # no region: the job's prompt alone
    assert np.allclose(regional[0, :, :4], 2.0 / (2.0 + BASE_SHARE))
    _, unweighted = region_maps(
        demo_request(0, regions=[{"box": [0, 0, 32, 64], "prompt": "a", "weight": 0.0}]).params, (None,), 8, 8
    )
    assert np.allclose(unweighted, 0.0)  # weight 0: the region changes nothing


# --- checking a job's regions --

INVALID = [
    (
        {"box": [0, 0, 80, 64], "prompt": "x"},
        "Item 1, box: [0, 0, 80, 64] reaches outside the 64 × 64 image.",
    ),
    ({"box": [32, 0, 16, 64], "prompt": "x"}, "Item 1, box: [32, 0, 16, 64] is empty: give [x0, y0, x1, y1]"),
    ({"box": [0, 0, 32], "prompt": "x"}, "Item 1, box: give the box as [x0, y0, x1, y1]."),
    (
        {"box": [0, 0, 32, 64], "mask": mask_url(), "prompt": "x"},
        "Item 1: give each region exactly one of box",
    ),
    ({"prompt": "x"}, "Item 1: give each region exactly one of box"),
    ({"mask": mask_url(box=None), "prompt": "x"}, "Item 1, mask: it is empty: paint the region first."),
    (
        {"mask": mask_url(size=(64, 32)), "prompt": "x"},
        "Item 1, mask: 64 × 32 is not the image's aspect ratio",
    ),
    ({"mask": "data:image/png;base64,AAAA", "prompt": "x"}, "Item 1, mask: the mask is not a PNG image"),
    ({"mask": "data:image/png;base64,&&", "prompt": "x"}, "Item 1, mask: the mask is not valid base64."),
    ({"mask": "", "prompt": "x"}, "Item 1, mask: paint the region first."),
    ({"box": [0, 0, 32, 64], "prompt": " "}, "Item 1, prompt: this field is required."),
    ({"box": [0, 0, 32, 64], "prompt": "x", "weight": 3}, "Item 1, weight: must be between 0 and 2."),
    ({"box": [0, 0, 32, 64], "prompt": "x", "colour": "red"}, "Item 1, colour: unknown field."),
]


@pytest.mark.parametrize(("region", "message"), INVALID, ids=[m[:40] for _, m in INVALID])
@pytest.mark.django_db(transaction=True)
def test_each_bad_region_is_a_400_that_says_what_to_do(client, team, queued, region, message):
    client.force_login(team["bob"])
    response = post_job(client, {"prompt": BASE, "regions": [region]})
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert message in " ".join(errors["regions"]), errors
    assert Job.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_region_limits_modes_and_families_are_400s(client, team, queued, monkeypatch):
    client.force_login(team["bob"])
    many = post_job(client, {"prompt": BASE, "regions": [HALVES[0]] * 9})
    assert many.status_code == 400
    assert "At most 8 regions." in many.json()["errors"]["regions"]
    outpaint = post_job(
        client, {"prompt": BASE, "mode": "outpaint", "extend": {"right": 8}, "regions": HALVES}
    )
    assert outpaint.status_code == 400
    assert "Only used for text to image, image to image, inpainting." in outpaint.json()["errors"]["regions"]
    monkeypatch.setattr(registry, "REGION_FAMILIES", ("sdxl",))
    other_family = post_job(client, {"prompt": BASE, "regions": HALVES})
    assert other_family.status_code == 400
    assert "does not take regional prompts" in " ".join(other_family.json()["errors"]["regions"])


@pytest.mark.django_db(transaction=True)
def test_a_mask_of_the_images_aspect_ratio_is_scaled_to_its_size(team, queued):
    from gallery.services import asset_storage

    job = services.do_create_job(
        team["bob"],
        team["project"],
        {
            "prompt": BASE,
            "regions": [{"mask": mask_url(size=(128, 128), box=(0, 0, 64, 128)), "prompt": "x"}],
        },
    )
    region = job.params["regions"][0]
    with asset_storage().open(region["mask"], "rb") as f:
        stored = f.read()
    assert region["mask_sha256"] == hashlib.sha256(stored).hexdigest()
    mask = Image.open(io.BytesIO(stored))
    assert mask.size == (64, 64)
    assert mask.getbbox() == (0, 0, 32, 64)
    assert region["weight"] == 1.0 and "box" not in region


def test_only_jobs_with_the_same_regions_share_a_call():
    with_halves = demo_request(0, regions=HALVES).params
    assert with_halves.batch_key() == demo_request(5, regions=HALVES, prompt="other").params.batch_key()
    assert with_halves.batch_key() != demo_request(0).params.batch_key()
    moved = [HALVES[0], {**HALVES[1], "weight": 1.5}]
    assert with_halves.batch_key() != demo_request(0, regions=moved).params.batch_key()
    assert with_halves.batch_key() != demo_request(0, regions=HALVES[::-1]).params.batch_key()


# --- jobs through the worker --


@pytest.mark.django_db(transaction=True)
def test_two_jobs_with_the_same_regions_share_one_call_and_both_follow_them(team, trained):
    from gallery.services import asset_storage

    def create(seed, regions):
        body = {"prompt": BASE, "seed": seed, "regions": regions}
        return services.do_create_job(team["bob"], team["project"], body)

    painted = [{"mask": mask_url(), "prompt": LEFT_RED}, HALVES[1]]
    first, same, other = create(0, painted), create(2, painted), create(0, HALVES[::-1])
    stored = first.params["regions"][0]["mask"]
    assert asset_storage().exists(stored)
    assert run_job(str(first.id)) == "succeeded"
    same.refresh_from_db()
    other.refresh_from_db()
    assert same.status == "succeeded"  # taken into the first one's call
    assert other.status == "queued"  # other regions: a call of its own
    assert not asset_storage().exists(stored)  # a finished job's region masks leave storage
    for job in (first, same):
        made = pixels(Asset.objects.get(job=job))
        assert left_red_right_blue(made), halves(made)


@pytest.mark.django_db(transaction=True)
def test_the_image_records_its_regions_in_its_parameters_file_and_credentials(client, team, queued, settings):
    settings.STUDIO_C2PA_INCLUDE_PROMPT = True
    painted = mask_url(box=(32, 0, 64, 64))
    body = {
        "prompt": BASE,
        "seed": 1,
        "steps": 4,
        "regions": [HALVES[0], {"mask": painted, "prompt": "b", "weight": 0.5}],
    }
    job = services.do_create_job(team["bob"], team["project"], body)
    assert run_job(str(job.id)) == "succeeded"
    asset = Asset.objects.get(job=job)
    sha = job.params["regions"][1]["mask_sha256"]
    expected = [
        {"box": [0, 0, 32, 64], "prompt": LEFT_RED, "weight": 1.0},
        {"mask_sha256": sha, "prompt": "b", "weight": 0.5},
    ]
    manifest = provenance.manifest_parameters(asset.params)
    assert manifest["regions"] == expected
    with asset.file.open("rb") as fh:
        written = read_provenance(fh.read())["studio"]["params"]["regions"]
    assert [{k: v for k, v in r.items() if k != "mask"} for r in written] == expected
    settings.STUDIO_C2PA_INCLUDE_PROMPT = False
    assert provenance.manifest_parameters(asset.params)["regions"] == [
        {"box": [0, 0, 32, 64], "weight": 1.0},
        {"mask_sha256": sha, "weight": 0.5},
    ]
    client.force_login(team["bob"])
    page = client.get(f"/assets/{asset.id}/").content.decode()
    assert 'id="asset-regions"' in page
    assert f'box 0, 0, 32, 64: <span class="prompt-text">{LEFT_RED}</span> (weight 1.0)' in page
    assert f'title="sha256 {sha}"' in page


@pytest.mark.django_db(transaction=True)
def test_the_models_list_says_which_take_regions(client, team, demo_model_dir):
    client.force_login(team["bob"])
    demo = next(m for m in client.get("/api/v1/models").json() if m["id"] == "demo")
    assert "regions" in demo["features"]
    assert registry.model_features(registry.get_model("demo")) == ["regions", "reference"]


@pytest.mark.django_db(transaction=True)
def test_a_tiny_sdxl_model_runs_a_regional_inpainting_and_txt2img(team, settings, monkeypatch, tmp_path):
    """SDXL's pooled text embedding and size conditioning go to each region's pass: a job with regions runs
    and differs from the same job without them."""
    from generation import library
    from generation.engine import pipelines, runner
    from tests import library_models

    settings.MODELS_DIR = tmp_path / "models"
    monkeypatch.setattr(services, "enqueue", lambda job_id, queue: None)
    monkeypatch.setattr(runner, "_cache", pipelines.PipelineCache())
    cache.clear()
    source = library_models.build_folder("sdxl", tmp_path / "sdxl")
    library.do_install_model(team["root"], str(source), name="tiny-sdxl")
    meta_path = Path(settings.MODELS_DIR) / "tiny-sdxl" / "studio.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "min_size": 64}))
    assert "regions" in registry.model_features(registry.get_model("tiny-sdxl"))

    def made(**extra):
        body = {
            "prompt": "a red circle",
            "model": "tiny-sdxl",
            "seed": 3,
            "steps": 3,
            "width": 64,
            "height": 64,
        }
        job = services.do_create_job(team["bob"], team["project"], {**body, **extra})
        assert run_job(str(job.id)) == "succeeded", Job.objects.get(id=job.id).error
        return pixels(Asset.objects.get(job=job))

    plain = made()
    regional = made(
        regions=[{"box": [0, 0, 32, 64], "prompt": "a blue square"}, {"mask": mask_url(), "prompt": "x"}]
    )
    assert regional.size == (64, 64)
    assert regional.tobytes() != plain.tobytes()
    assert made().tobytes() == plain.tobytes()
    start = factories.asset(team["project"], team["bob"], prompt="x", size=64)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buffer, format="PNG")
    from django.core.files.base import ContentFile

    start.file.save(f"{start.id}.png", ContentFile(buffer.getvalue()), save=False)
    start.width = start.height = 64
    start.save()
    inpainted = made(
        mode="inpaint", init_asset=str(start.id), mask=mask_url(), regions=HALVES, width=64, height=64
    )
    assert inpainted.size == (64, 64)
