"""The AUTOMATIC1111 API (``/sdapi/v1/``): the accounts, projects, quotas, audit and gallery of ``/api/v1``.

Jobs run inline here (the test's enqueue runs them at commit); tests/integration/test_sdapi_client.py drives
a live studio with the real ``webuiapi`` client.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
from django.test import Client
from PIL import Image

from gallery.models import Asset
from generation.models import Job
from studio.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def inline_jobs(monkeypatch, demo_model_dir, settings):
    """Jobs run as soon as they are committed, in the caller's thread (as a worker would run them)."""
    from generation import services
    from generation.tasks import run_job

    monkeypatch.setattr(services, "enqueue", lambda job_id, queue: run_job(str(job_id)))


def sdapi(token: str, project: str | None = "poster", **headers: str) -> Client:
    extra = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    if project:
        extra["HTTP_X_STUDIO_PROJECT"] = project
    extra.update(headers)
    return Client(**extra)


def post(client: Client, path: str, body: dict) -> object:
    return client.post(f"/sdapi/v1/{path}", data=json.dumps(body), content_type="application/json")


def png(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def as_b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


BODY = {"prompt": "a red circle", "seed": 42, "steps": 3, "width": 64, "height": 64, "batch_size": 2}


def test_txt2img_makes_the_studios_own_job_with_its_provenance(team, inline_jobs):
    client = sdapi(factories.token(team["bob"]))
    response = post(client, "txt2img", BODY)
    assert response.status_code == 200, response.content
    data = response.json()
    assert len(data["images"]) == 2
    first = png(data["images"][0])
    assert first.size == (64, 64)
    assert "Seed: 42" in first.text["parameters"]
    assert json.loads(first.text["studio"])["params"]["seed"] == 42
    info = json.loads(data["info"])
    assert info["all_seeds"] == [42, 43]
    assert info["studio"]["project"] == "poster"
    assert data["parameters"]["prompt"] == "a red circle"
    job = Job.objects.get(id=info["studio"]["jobs"][0])
    assert job.created_by == team["bob"] and job.status == "succeeded"
    assert Asset.objects.filter(job=job).count() == 2
    assert AuditEvent.objects.filter(action="job.create", actor_name="bob").count() == 1


def test_the_same_seed_through_both_apis_gives_the_same_image(team, inline_jobs):
    token = factories.token(team["bob"])
    a1111 = png(post(sdapi(token), "txt2img", {**BODY, "batch_size": 1}).json()["images"][0])
    job = Client(HTTP_AUTHORIZATION=f"Bearer {token}").post(
        "/api/v1/projects/poster/jobs",
        data=json.dumps(
            {
                "prompt": "a red circle",
                "seed": 42,
                "steps": 3,
                "width": 64,
                "height": 64,
                "guidance_scale": 7.0,
                "scheduler": "Euler",
            }
        ),
        content_type="application/json",
    )
    asset = Asset.objects.get(job_id=job.json()["id"])
    with asset.file.open("rb") as f:
        studio = Image.open(io.BytesIO(f.read()))
        studio.load()
    assert a1111.tobytes() == studio.tobytes()


def test_a_call_needs_a_project_and_says_how_to_name_one(team, inline_jobs):
    response = post(sdapi(factories.token(team["bob"]), project=None), "txt2img", BODY)
    assert response.status_code == 400
    assert "X-Studio-Project" in response.json()["error"]
    assert "--project" in response.json()["detail"]
    assert Job.objects.count() == 0


def test_basic_auth_takes_the_username_and_a_token_never_a_password(team, inline_jobs):
    token = factories.token(team["bob"])

    def basic(user: str, secret: str) -> Client:
        encoded = base64.b64encode(f"{user}:{secret}".encode()).decode()
        return Client(HTTP_AUTHORIZATION=f"Basic {encoded}", HTTP_X_STUDIO_PROJECT="poster")

    assert basic("bob", token).get("/sdapi/v1/sd-models").status_code == 200
    assert basic("bob", "password").get("/sdapi/v1/sd-models").status_code == 401
    assert basic("alice", token).get("/sdapi/v1/sd-models").status_code == 401
    assert Client().get("/sdapi/v1/sd-models").status_code == 401
    # Basic is for the AUTOMATIC1111 API only; /api/v1 takes Bearer tokens.
    assert basic("bob", token).get("/api/v1/me").status_code == 401


def test_viewers_are_refused_and_quotas_hold(team, inline_jobs):
    response = post(sdapi(factories.token(team["vera"])), "txt2img", BODY)
    assert response.status_code == 403
    from studio import quotas
    from studio.models import QuotaScope

    quotas.do_set_limits(team["root"], QuotaScope.USER, {"images": 1, "gpu_seconds": None}, user=team["bob"])
    response = post(sdapi(factories.token(team["bob"])), "txt2img", BODY)
    assert response.status_code == 429
    assert "image quota" in response.json()["error"]
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("steps", 0),
        ("steps", "20"),
        ("cfg_scale", "lots"),
        ("width", 65),
        ("batch_size", 9),
        ("seed", 2**40),
        ("restore_faces", True),
        ("tiling", True),
        ("styles", ["cinematic"]),
        ("script_name", "x/y/z plot"),
        ("sampler_name", "Magic"),
        ("override_settings", {"sd_model_checkpoint": "no-such-model"}),
        ("colour", "red"),
    ],
)
def test_bad_fields_are_a_clear_400_naming_them(team, inline_jobs, field, value):
    response = post(sdapi(factories.token(team["bob"])), "txt2img", {**BODY, field: value})
    assert response.status_code == 400, response.content
    data = response.json()
    named = "sd_model_checkpoint" if field == "override_settings" else field
    assert named in data["errors"], data
    assert data["detail"] == data["error"]
    assert Job.objects.count() == 0


def test_unserved_scripts_are_ignored_and_the_info_says_so(team, inline_jobs):
    body = {**BODY, "batch_size": 1, "alwayson_scripts": {"ADetailer": {"args": [False]}}}
    response = post(sdapi(factories.token(team["bob"])), "txt2img", body)
    assert response.status_code == 200, response.content
    assert "ADetailer" in json.loads(response.json()["info"])["comments"]


def test_batches_are_jobs_with_consecutive_seeds(team, inline_jobs):
    response = post(sdapi(factories.token(team["bob"])), "txt2img", {**BODY, "n_iter": 2})
    info = json.loads(response.json()["info"])
    assert info["all_seeds"] == [42, 43, 44, 45]
    assert len(info["studio"]["jobs"]) == 2


def test_hires_fix_upscales_each_image(team, inline_jobs):
    body = {**BODY, "batch_size": 1, "enable_hr": True, "hr_scale": 2, "denoising_strength": 0.5}
    response = post(sdapi(factories.token(team["bob"])), "txt2img", body)
    assert response.status_code == 200, response.content
    image = png(response.json()["images"][0])
    assert image.size == (128, 128)
    child = Asset.objects.get(id=json.loads(response.json()["info"])["studio"]["assets"][0])
    assert child.parent is not None and child.params["mode"] == "upscale"
    assert post(sdapi(factories.token(team["bob"])), "txt2img", {**body, "hr_scale": 1.5}).status_code == 400


def test_img2img_with_a_mask_inpaints_and_keeps_the_start_image(team, inline_jobs):
    start = Image.new("RGB", (64, 64), (10, 20, 200))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    body = {
        "prompt": "a red square",
        "seed": 3,
        "steps": 4,
        "init_images": ["data:image/png;base64," + as_b64(start)],
        "mask": as_b64(mask),
        "denoising_strength": 0.75,
        "mask_blur": 0,
    }
    response = post(sdapi(factories.token(team["bob"])), "img2img", body)
    assert response.status_code == 200, response.content
    result = png(response.json()["images"][0]).convert("RGB")
    assert result.getpixel((60, 30)) == (10, 20, 200)  # the kept half is the start image's own pixels
    child = Asset.objects.get(id=json.loads(response.json()["info"])["studio"]["assets"][0])
    assert child.params["mode"] == "inpaint" and child.mask
    assert child.parent is not None and child.parent.kind == "upload"


def test_options_are_kept_per_token(team, inline_jobs, tmp_path):
    first, second = factories.token(team["bob"]), factories.token(team["bob"])
    assert sdapi(first).get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("demo")
    refused = post(sdapi(first), "options", {"sd_model_checkpoint": "nope"})
    assert refused.status_code == 400
    answer = post(sdapi(first), "options", {"sd_model_checkpoint": "demo", "samples_format": "jpg"})
    assert answer.json() == {"ignored": ["samples_format"]}
    assert sdapi(second).get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("demo")


def test_png_info_reads_the_parameters_back(team, inline_jobs):
    client = sdapi(factories.token(team["bob"]))
    image = post(client, "txt2img", {**BODY, "batch_size": 1}).json()["images"][0]
    info = post(client, "png-info", {"image": image}).json()
    assert info["parameters"]["Prompt"] == "a red circle"
    assert info["parameters"]["Seed"] == 42
    assert info["parameters"]["Steps"] == 3
    assert info["items"]["studio"]["params"]["seed"] == 42
    assert post(client, "png-info", {"image": "not base64!"}).status_code == 400


def test_lists_and_what_is_not_served(team, inline_jobs):
    client = sdapi(factories.token(team["bob"]))
    models = client.get("/sdapi/v1/sd-models").json()
    assert models[0]["model_name"] == "demo" and "/" not in models[0]["filename"]
    assert {s["name"] for s in client.get("/sdapi/v1/samplers").json()} >= {"Euler", "Euler a"}
    assert client.get("/sdapi/v1/scripts").json() == {"txt2img": [], "img2img": []}
    assert client.get("/sdapi/v1/progress").json()["progress"] == 0
    memory = client.get("/sdapi/v1/memory")
    assert memory.status_code == 200 and "GPU workers" in memory.json()["cuda"]["error"]
    unknown = client.get("/sdapi/v1/interrogate")
    assert unknown.status_code == 404 and "not served" in unknown.json()["error"]


def test_a_tokens_default_project_is_used_without_the_header(team, inline_jobs):
    from studio.services import do_create_token

    _, token = do_create_token(team["bob"], "gimp", default_project=team["project"].slug)
    response = post(sdapi(token, project=None), "txt2img", {**BODY, "batch_size": 1})
    assert response.status_code == 200, response.content
    assert json.loads(response.json()["info"])["studio"]["project"] == "poster"
