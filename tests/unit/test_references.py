"""Reference images ("reference only" attention): Bob steers a job of the bundled demo model with a solid red
picture of the project, and the image comes out redder; its weight and style fidelity do what the README says;
the image names its references (parameters, Content Credentials, asset page); a job without references after
one with them is the same image as before; a style's references apply unless the job chooses its own; bad
references are 400s that say why."""

from __future__ import annotations

import hashlib
import io
import json
import uuid

import numpy as np
import pytest
from django.core.files.base import ContentFile
from PIL import Image

from gallery.models import Asset
from gallery.provenance import generation_manifest
from generation import services
from generation.models import Job
from generation.schemas import JobParams
from generation.tasks import run_job
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

RED, BLUE = (230, 25, 25), (20, 50, 230)
# The trained demo model draws "a circle" on a background of its choosing; a solid red reference at weight 2
# turns that background red. Measured (redness = mean red − mean of green and blue, 8 steps, guidance 5),
# seeds 0, 1, 2: none 7.8 / 7.7 / 9.1; weight 1, fidelity 1: 58.0 / 73.0 / 48.0; weight 2, fidelity 1:
# 119.9 / 149.3 / 109.1; weight 2, fidelity 0: −2.4 / −5.8 / −6.1.
BODY = {"prompt": "a circle", "steps": 8, "guidance_scale": 5.0}


@pytest.fixture
def poster(team, models_dir, settings):
    """The team's project, with the bundled (trained) demo model as "demo" and jobs run in the test."""
    from generation.engine.training import BUNDLED_MODEL_DIR

    settings.STUDIO_BUNDLED_MODELS = {"demo": BUNDLED_MODEL_DIR}
    return team


def stored(team, colour, project=None) -> Asset:
    asset = factories.asset(project or team["project"], team["bob"], prompt="a flat colour")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buffer, format="PNG")
    asset.file.save(f"{asset.id}.png", ContentFile(buffer.getvalue()), save=False)
    asset.sha256 = hashlib.sha256(buffer.getvalue()).hexdigest()
    asset.save()
    return asset


def make(team, **body) -> Job:
    return services.do_create_job(team["bob"], team["project"], {**BODY, **body})


def image_of(job: Job) -> Image.Image:
    asset = Asset.objects.get(job=job)
    with asset.file.open("rb") as fh:
        image = Image.open(io.BytesIO(fh.read()))
        image.load()
    return image.convert("RGB")


def redness(image: Image.Image) -> float:
    mean = np.asarray(image, dtype=np.float32).reshape(-1, 3).mean(axis=0)
    return float(mean[0] - (mean[1] + mean[2]) / 2)


def generated(team, **body) -> Image.Image:
    job = make(team, **body)
    assert run_job(str(job.id)) == "succeeded", Job.objects.get(id=job.id).error
    return image_of(job)


def ref(asset: Asset, **values) -> dict:
    return {"image": str(asset.id), **values}


def test_a_red_reference_makes_the_image_redder_and_names_itself_everywhere(client, poster):
    team = poster
    red = stored(team, RED)
    before = generated(team, seed=0)
    job = make(team, seed=0, references=[ref(red, weight=2.0, fidelity=1.0)])
    assert job.params["references"] == [
        {"image": str(red.id), "kind": "reference", "weight": 2.0, "fidelity": 1.0, "sha256": red.sha256}
    ]
    assert run_job(str(job.id)) == "succeeded"
    steered = image_of(job)
    assert redness(steered) > redness(before) + 60, (redness(before), redness(steered))

    asset = Asset.objects.get(job=job)
    assert asset.params["references"][0]["sha256"] == red.sha256
    manifest = generation_manifest(asset, project_slug="poster", project_name="Poster", author="bob",
                                   with_parent=False)  # fmt: skip
    generation = next(a["data"] for a in manifest["assertions"] if a["label"] == "org.studio.generation")
    assert generation["references"] == [
        {"image": str(red.id), "kind": "reference", "weight": 2.0, "fidelity": 1.0, "sha256": red.sha256}
    ]
    client.force_login(team["vera"])
    page = client.get(f"/assets/{asset.id}/").content.decode()
    assert 'id="asset-references"' in page
    assert f'href="/assets/{red.id}/"' in page
    assert "reference, fidelity 1.0, weight 2.0" in page

    # The same seed without references afterwards: the very same image as before the reference job.
    assert generated(team, seed=0).tobytes() == before.tobytes()


@pytest.mark.parametrize("seed", [1, 2])
def test_weight_and_fidelity_are_honoured(poster, seed):
    team = poster
    red = stored(team, RED)
    none = generated(team, seed=seed)
    zero = generated(team, seed=seed, references=[ref(red, weight=0.0, fidelity=1.0)])
    one = generated(team, seed=seed, references=[ref(red, weight=1.0, fidelity=1.0)])
    two = generated(team, seed=seed, references=[ref(red, weight=2.0, fidelity=1.0)])
    loose = generated(team, seed=seed, references=[ref(red, weight=2.0, fidelity=0.0)])
    # Weight 0: the reference's tokens get no attention at all.
    assert np.abs(np.asarray(zero, dtype=np.int16) - np.asarray(none, dtype=np.int16)).max() <= 1
    assert redness(one) > redness(none) + 25
    assert redness(two) > redness(one) + 25
    # Fidelity 0: guidance's two halves see the reference alike, and the prompt keeps its say.
    assert redness(two) > redness(loose) + 60
    assert abs(redness(loose) - redness(none)) < 30


def test_without_guidance_fidelity_changes_nothing(poster):
    team = poster
    red = stored(team, RED)
    body = {"seed": 0, "guidance_scale": 1.0}
    close = generated(team, **body, references=[ref(red, weight=2.0, fidelity=1.0)])
    loose = generated(team, **body, references=[ref(red, weight=2.0, fidelity=0.0)])
    assert close.tobytes() == loose.tobytes()
    assert redness(close) > redness(generated(team, **body)) + 60


def test_several_references_at_once_each_with_its_weight(poster):
    team = poster
    red, blue = stored(team, RED), stored(team, BLUE)
    only_red = generated(team, seed=0, references=[ref(red, weight=2.0, fidelity=1.0)])
    both = make(team, seed=0, references=[ref(red, weight=2.0, fidelity=1.0), ref(blue, weight=2.0)])
    assert [r["image"] for r in both.params["references"]] == [str(red.id), str(blue.id)]
    assert run_job(str(both.id)) == "succeeded"
    mixed = np.asarray(image_of(both), dtype=np.float32).reshape(-1, 3).mean(axis=0)
    alone = np.asarray(only_red, dtype=np.float32).reshape(-1, 3).mean(axis=0)
    assert mixed[2] > alone[2] + 10  # the blue reference pulls towards blue
    # A blue reference muted to weight 0 leaves the red one's image as it was.
    muted = generated(team, seed=0, references=[ref(red, weight=2.0, fidelity=1.0), ref(blue, weight=0.0)])
    assert np.abs(np.asarray(muted, dtype=np.int16) - np.asarray(only_red, dtype=np.int16)).max() <= 1


def test_jobs_with_the_same_references_share_a_call_and_others_wait(poster):
    team = poster
    red, blue = stored(team, RED), stored(team, BLUE)
    refs = [ref(red, weight=2.0, fidelity=1.0)]
    first = make(team, seed=3, references=refs)
    same = make(team, seed=4, references=refs)
    other = make(team, seed=4, references=[ref(blue, weight=2.0, fidelity=1.0)])
    plain = make(team, seed=4)
    assert run_job(str(first.id)) == "succeeded"
    for job in (same, other, plain):
        job.refresh_from_db()
    assert same.status == "succeeded"  # taken into the first one's call
    assert other.status == "queued" and plain.status == "queued"
    batched = image_of(same)
    for job in (other, plain):  # (a worker starts the queue's first job, whichever it was sent)
        assert run_job(str(job.id)) == "succeeded"
    assert not Job.objects.filter(status="queued").exists()
    alone = generated(team, seed=4, references=refs)
    difference = np.abs(np.asarray(batched, dtype=np.int16) - np.asarray(alone, dtype=np.int16))
    assert difference.mean() < 1.0 and difference.max() <= 8  # the same image, within batched rounding
    assert redness(batched) > 60


def test_the_batch_key_holds_the_references():
    base = {"prompt": "x", "width": 64, "height": 64, "steps": 2, "guidance_scale": 5.0, "seed": 0,
            "scheduler": "Euler", "model": "demo"}  # fmt: skip
    image = str(uuid.uuid4())

    def key(*references):
        return JobParams.model_validate({**base, "references": list(references)}).batch_key()

    one = {"image": image, "kind": "reference", "weight": 1.0, "fidelity": 0.5}
    assert key(one) == key(dict(one))
    assert key(one) != key()
    assert key(one) != key({**one, "weight": 1.5})
    assert key(one) != key({**one, "fidelity": 0.2})
    assert key(one) != key({**one, "image": str(uuid.uuid4())})


def test_inpainting_and_image_to_image_take_references_too(poster):
    team = poster
    red, blue = stored(team, RED), stored(team, BLUE)
    refs = [ref(red, weight=2.0, fidelity=1.0)]
    img2img = generated(team, seed=0, mode="img2img", init_asset=str(blue.id), strength=0.9, references=refs)
    plain = generated(team, seed=0, mode="img2img", init_asset=str(blue.id), strength=0.9)
    assert redness(img2img) > redness(plain) + 20
    mask = Image.new("L", (64, 64), 255)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    import base64

    data = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    inpainted = generated(team, seed=0, mode="inpaint", init_asset=str(blue.id), mask=data, references=refs)
    assert inpainted.size == (64, 64)


# --- styles --


def test_a_styles_references_apply_unless_the_job_chooses_its_own_and_a_lock_holds(client, poster):
    team = poster
    red, blue = stored(team, RED), stored(team, BLUE)
    client.force_login(team["alice"])
    made = client.post(
        "/api/v1/projects/poster/styles",
        data=json.dumps({"name": "Red", "references": [str(red.id)]}),
        content_type="application/json",
    )
    assert made.status_code == 201, made.json()
    style = made.json()["id"]
    job = make(team, seed=0, style=style)
    assert job.params["references"] == [
        {"image": str(red.id), "kind": "reference", "weight": 1.0, "fidelity": 0.5, "sha256": red.sha256}
    ]
    own = make(team, seed=0, style=style, references=[ref(blue, weight=0.5)])
    assert [r["image"] for r in own.params["references"]] == [str(blue.id)]
    assert make(team, seed=0, style=style, references=[]).params.get("references", []) == []

    locked = client.post(
        "/api/v1/projects/poster/styles",
        data=json.dumps({"name": "Red locked", "references": [str(red.id)], "locks": ["references"]}),
        content_type="application/json",
    ).json()
    client.force_login(team["bob"])
    body = {**BODY, "style": locked["id"], "references": [ref(blue)]}
    response = client.post(
        "/api/v1/projects/poster/jobs", data=json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"] == (
        "The style 'Red locked' locks the reference images; leave it out or choose another style."
    )
    same = {**body, "references": [ref(red)]}
    response = client.post(
        "/api/v1/projects/poster/jobs", data=json.dumps(same), content_type="application/json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["params"]["references"][0]["image"] == str(red.id)
    # The style's references run: the job succeeds and its image names them.
    assert run_job(response.json()["id"]) == "succeeded"
    assert Asset.objects.get(job_id=response.json()["id"]).params["references"][0]["image"] == str(red.id)


# --- bad references --


INVALID = [
    ({"references": [{"image": "{red}", "kind": "controlnet"}]}, "references", "reference"),
    ({"references": [{"image": "{other}"}]}, "references", "Reference 1: No such asset."),
    ({"references": [{"image": "{red}"}] * 5}, "references", "At most 4 reference images at once."),
    ({"references": [{"image": "{red}", "weight": 2.5}]}, "references", "2"),
    ({"references": [{"image": "{red}", "weight": -0.1}]}, "references", "0"),
    ({"references": [{"image": "{red}", "fidelity": 1.5}]}, "references", "1"),
    ({"references": [{"image": "not-an-id"}]}, "references", "image: no such asset."),
    ({"references": [{"weight": 1}]}, "references", "image: choose a reference image."),
    ({"references": [{"image": "{red}", "kind": "ip_adapter"}]}, "references", "No IP-Adapter for"),
    ({"references": "{red}"}, "references", 'Give a list of {"image": asset id'),
    (
        {"mode": "upscale", "init_asset": "{red}", "references": [{"image": "{red}"}]},
        "references",
        "Only used for text to image, image to image, inpainting.",
    ),
    (  # the "variation" mode has a "variation" field: the error still names the field sent
        {"mode": "variation", "init_asset": "{red}", "references": [{"image": "{red}"}]},
        "references",
        "Only used for text to image, image to image, inpainting.",
    ),
]


@pytest.mark.parametrize(
    ("body", "field", "message"), INVALID, ids=[json.dumps(b)[:60] for b, _, _ in INVALID]
)
def test_each_bad_reference_is_a_400_that_says_why(client, poster, body, field, message):
    team = poster
    red = stored(team, RED)
    other = factories.project(team["alice"], "Other")
    factories.member(other, team["bob"], "artist")
    foreign = stored(team, RED, project=other)
    text = json.dumps({**BODY, **body}).replace("{red}", str(red.id)).replace("{other}", str(foreign.id))
    client.force_login(team["bob"])
    response = client.post("/api/v1/projects/poster/jobs", data=text, content_type="application/json")
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert field in errors, errors
    assert message in " ".join(errors[field]), errors
    assert Job.objects.count() == 0


# --- what the studio lists and offers --


def test_the_models_list_the_reference_feature_and_the_form_offers_references(client, poster):
    team = poster
    client.force_login(team["bob"])
    demo = next(m for m in client.get("/api/v1/models").json() if m["id"] == "demo")
    assert demo["features"] == ["regions", "reference"]  # no IP-Adapter is installed
    page = client.get("/p/poster/").content.decode()
    for element in ('id="references-field"', 'id="reference-add"', 'id="reference-template"',
                    'id="references-style-note"', "generation/references.js"):  # fmt: skip
        assert element in page
    assert "<script>" not in page


def test_reproducing_an_image_brings_back_its_references(client, poster):
    team = poster
    red = stored(team, RED)
    job = make(team, seed=0, steps=2, references=[ref(red, weight=1.5, fidelity=0.25)])
    assert run_job(str(job.id)) == "succeeded"
    child = Asset.objects.get(job=job)
    client.force_login(team["bob"])
    initial = json.loads(client.get(f"/p/poster/?from={child.id}").context["initial_json"])
    assert initial["references"] == [
        {"image": str(red.id), "kind": "reference", "weight": 1.5, "fidelity": 0.25}
    ]


def test_a_reference_deleted_before_the_job_runs_fails_it_with_a_sentence(poster):
    team = poster
    red = stored(team, RED)
    job = make(team, seed=0, steps=2, references=[ref(red)])
    Asset.objects.filter(id=red.id).delete()
    assert run_job(str(job.id)) == "failed"
    job.refresh_from_db()
    assert job.error == "A reference image was deleted before the job ran."


def test_the_unet_is_left_as_it_was_even_when_the_call_fails(poster):
    from generation.engine import reference, registry, runner

    info = registry.get_model("demo")
    assert info is not None
    unet = runner.cache().get(info).pipe.unet
    before = dict(unet.attn_processors)
    steered = [reference.Reference(Image.new("RGB", (64, 64), RED))]
    wrapped: list = []

    def failing_call() -> None:
        pipe = runner.cache().get(info).pipe
        with reference.references_applied(pipe, steered, width=64, height=64, guidance_scale=5.0):
            wrapped.extend(
                p for p in unet.attn_processors.values() if isinstance(p, reference.ReferenceAttnProcessor)
            )
            raise RuntimeError("the call failed")

    with pytest.raises(RuntimeError, match="the call failed"):
        failing_call()
    assert len(wrapped) == sum(name.endswith("attn1.processor") for name in before) > 0
    after = unet.attn_processors
    assert after.keys() == before.keys() and all(after[name] is before[name] for name in before)
    assert not unet._forward_pre_hooks and not unet._forward_hooks


def test_references_leave_less_room_in_a_call(settings, monkeypatch, poster):
    from generation import worker
    from generation.engine import registry, runner

    settings.STUDIO_MAX_BATCH = 8
    monkeypatch.setattr(runner, "batch_capacity", lambda model, width, height, units=0: 8)
    info = registry.get_model("demo")
    plain = runner.text_request(info, "a circle")
    two = {"image": str(uuid.uuid4()), "kind": "reference", "weight": 1.0, "fidelity": 0.5}
    steered = runner.text_request(info, "a circle", references=[two, dict(two)])
    assert worker.batch_room(plain) == 7
    assert worker.batch_room(steered) == 4  # 8 / (1 + 2 × 0.25) images in all, this one's included


def test_references_and_regions_steer_one_job_together(poster):
    """Reference attention and regional prompts hook the same UNet in one call: both take effect."""
    red = stored(poster, (220, 20, 20))
    regions = [{"box": [0, 0, 32, 64], "prompt": "a circle on a blue background"}]
    plain = generated(poster, seed=3)
    regional = generated(poster, seed=3, regions=regions)
    both = generated(poster, seed=3, regions=regions, references=[ref(red, weight=2.0, fidelity=1.0)])
    assert both.size == plain.size == (64, 64)
    assert np.asarray(regional).tobytes() != np.asarray(plain).tobytes()
    assert redness(both) > redness(regional) + 30
