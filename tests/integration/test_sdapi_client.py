"""The real ``webuiapi`` client, as pipelines and plugins use it, against a live studio (daphne, a Celery
worker, PostgreSQL, Redis): the studio's AUTOMATIC1111 API on its accounts, projects, quotas and gallery."""

from __future__ import annotations

import base64
import io
import json
import threading

import pytest
import webuiapi
from PIL import Image

from gallery.models import Asset
from generation.models import Job
from studio import quotas
from studio.models import QuotaScope
from tests import factories
from tests.integration.stack import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def studio(stack):
    lead = factories.user("lena")
    viewer = factories.user("vic")
    project = factories.project(lead, "Key art")
    factories.member(project, viewer, "viewer")
    return {
        "stack": stack,
        "lead": lead,
        "viewer": viewer,
        "project": project,
        "token": factories.token(lead),
    }


def client(
    studio, *, token: str | None = None, user: str = "lena", bearer: bool = False
) -> webuiapi.WebUIApi:
    """webuiapi as a tool configured with the studio's address, the username and an API token."""
    token = token or studio["token"]
    if bearer:
        api = webuiapi.WebUIApi(baseurl=f"{studio['stack'].base_url}/sdapi/v1", steps=4)
        api.session.headers["Authorization"] = f"Bearer {token}"
    else:
        api = webuiapi.WebUIApi(
            baseurl=f"{studio['stack'].base_url}/sdapi/v1", username=user, password=token, steps=4
        )
    api.session.headers["X-Studio-Project"] = studio["project"].slug
    return api


def pixels(image: Image.Image) -> bytes:
    return image.convert("RGB").tobytes()


def test_txt2img_gives_the_studios_own_image_for_a_seed(studio):
    api = client(studio)
    result = api.txt2img(prompt="a red circle on blue", seed=1234, width=64, height=64, sampler_name="Euler")
    assert len(result.images) == 1
    image = result.images[0]
    assert result.info["all_seeds"] == [1234]
    # The same job through /api/v1 gives the same image.
    status, job = studio["stack"].api(
        "POST",
        f"/api/v1/projects/{studio['project'].slug}/jobs",
        studio["token"],
        {
            "prompt": "a red circle on blue",
            "seed": 1234,
            "width": 64,
            "height": 64,
            "steps": 4,
            "guidance_scale": 7.0,
            "scheduler": "Euler",
        },
    )
    assert status == 201, job
    wait_until(lambda: Job.objects.get(id=job["id"]).status == "succeeded", 60, what="the /api/v1 job")
    asset = Asset.objects.get(job_id=job["id"])
    with asset.file.open("rb") as f:
        assert pixels(Image.open(io.BytesIO(f.read()))) == pixels(image)
    # The image is in the project's gallery, with its provenance.
    made = Asset.objects.get(id=result.info["studio"]["assets"][0])
    assert made.project == studio["project"] and made.created_by == studio["lead"]
    assert "Seed: 1234" in image.info["parameters"]
    assert json.loads(image.info["studio"])["model_sha256"] == made.model_sha256


def test_img2img_with_a_mask_inpaints(studio):
    api = client(studio, bearer=True)
    start = Image.new("RGB", (64, 64), (20, 30, 200))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    result = api.img2img(
        images=[start],
        mask_image=mask,
        prompt="a yellow square",
        seed=7,
        denoising_strength=0.8,
        width=64,
        height=64,
        mask_blur=0,
    )
    out = result.images[0].convert("RGB")
    assert out.getpixel((60, 10)) == (20, 30, 200)  # the kept half is the start image's own
    child = Asset.objects.get(id=result.info["studio"]["assets"][0])
    assert child.params["mode"] == "inpaint" and child.mask and child.parent.kind == "upload"


def test_progress_shows_the_running_jobs_preview_and_interrupt_stops_it(studio):
    api = client(studio)
    done: dict = {}

    def generate() -> None:
        done["result"] = api.txt2img(prompt="a green star", seed=5, width=128, height=128, steps=150)

    thread = threading.Thread(target=generate)
    thread.start()
    watcher = client(studio)

    def preview():
        progress = watcher.get_progress()
        return progress if progress.get("current_image") else None

    progress = wait_until(preview, 120, interval=0.2, what="a live preview")
    assert 0 < progress["progress"] < 1
    assert progress["state"]["sampling_steps"] == 150
    assert Image.open(io.BytesIO(base64.b64decode(progress["current_image"]))).size[0] > 0
    assert watcher.interrupt()["interrupted"] == 1
    thread.join(60)
    assert not thread.is_alive()
    assert done["result"].info["interrupted"] is True
    job = Job.objects.get(id=done["result"].info["studio"]["jobs"][0])
    assert job.status == "canceled"


def test_switching_models_through_the_options_is_per_token(studio, tmp_path):
    from django.conf import settings

    from generation.engine.demo import build_random_model

    build_random_model(settings.MODELS_DIR / "second")
    api = client(studio)
    other = client(studio, token=factories.token(studio["lead"]))
    assert any(name.startswith("second") for name in api.util_get_model_names())
    api.util_set_model("second")
    assert api.util_get_current_model().startswith("second")
    assert other.util_get_current_model().startswith("demo")
    result = api.txt2img(prompt="a red circle", seed=1, width=64, height=64)
    assert Asset.objects.get(id=result.info["studio"]["assets"][0]).model_id == "second"


def test_auth_roles_and_quotas_hold(studio):
    # Basic with the username and a token works (every test above); a wrong token, or the password in
    # the token's place, is refused.
    for secret in ("stu_not-a-token", "correct horse battery"):
        with pytest.raises(RuntimeError) as refused:
            client(studio, token=secret).txt2img(prompt="x", width=64, height=64)
        assert refused.value.args[0] == 401
    with pytest.raises(RuntimeError) as viewer:
        client(studio, token=factories.token(studio["viewer"]), user="vic").txt2img(
            prompt="x", width=64, height=64
        )
    assert viewer.value.args[0] == 403
    admin = factories.user("boss", admin=True)
    quotas.do_set_limits(
        admin, QuotaScope.PROJECT, {"images": 0, "gpu_seconds": None}, project=studio["project"]
    )
    with pytest.raises(RuntimeError) as refused:
        client(studio).txt2img(prompt="x", width=64, height=64)
    assert refused.value.args[0] == 429
    assert "image quota" in json.loads(refused.value.args[1])["error"]
