"""Every job field is validated; bad input is a 400 naming the field, and nothing is stored."""

from __future__ import annotations

import json

import pytest

from generation.models import Job
from tests import factories

pytestmark = pytest.mark.django_db


def post_job(client, project, body):
    return client.post(
        f"/api/v1/projects/{project.slug}/jobs", data=json.dumps(body), content_type="application/json"
    )


@pytest.fixture
def artist_client(client, team, demo_model_dir):
    client.force_login(team["bob"])
    return client


INVALID = [
    ("prompt", None),
    ("prompt", ""),
    ("prompt", "   "),
    ("prompt", "x" * 2001),
    ("prompt", 42),
    ("negative_prompt", "y" * 2001),
    ("negative_prompt", ["no"]),
    ("model", "no-such-model"),
    ("width", 65),
    ("width", 8),
    ("width", 4096),
    ("width", "wide"),
    ("height", 100),
    ("height", True),
    ("steps", 0),
    ("steps", 151),
    ("steps", 2.5),
    ("guidance_scale", -1),
    ("guidance_scale", 30.5),
    ("guidance_scale", "lots"),
    ("guidance_scale", float("nan")),
    ("seed", -1),
    ("seed", 2**32),
    ("seed", "lucky"),
    ("scheduler", "Magic"),
    ("num_images", 0),
    ("num_images", 9),
    ("mode", "sketch"),
    ("init_asset", "8c0f1d7e-0000-0000-0000-000000000000"),
    ("colour", "red"),
]


@pytest.mark.parametrize(("field", "value"), INVALID, ids=[f"{f}={v!r}"[:40] for f, v in INVALID])
def test_each_invalid_field_is_a_400_naming_it_and_stores_nothing(artist_client, team, field, value):
    body = {"prompt": "a red circle", field: value}
    if value is None:
        body.pop(field)
    if field == "guidance_scale" and value != value:  # NaN is not JSON; send it the way a script would
        response = artist_client.post(
            f"/api/v1/projects/{team['project'].slug}/jobs",
            data='{"prompt": "a red circle", "guidance_scale": NaN}',
            content_type="application/json",
        )
    else:
        response = post_job(artist_client, team["project"], body)
    assert response.status_code == 400, response.content
    data = response.json()
    assert field in data["errors"], data
    assert data["error"]
    assert Job.objects.count() == 0


def test_several_bad_fields_are_reported_together(artist_client, team):
    response = post_job(artist_client, team["project"], {"prompt": "", "steps": 0, "width": 63})
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"prompt", "steps", "width"}


def test_body_that_is_not_json_is_a_clear_400(artist_client, team):
    response = artist_client.post(
        f"/api/v1/projects/{team['project'].slug}/jobs", data="prompt=hi", content_type="application/json"
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]
    response = post_job(artist_client, team["project"], ["a list"])
    assert response.status_code == 400


def test_valid_job_records_every_parameter_as_used(
    artist_client, team, django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    monkeypatch.setattr(
        "generation.services.enqueue", lambda job_id, queue: sent.append((str(job_id), queue))
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = post_job(artist_client, team["project"], {"prompt": "  a red circle  ", "num_images": 2})
    assert response.status_code == 201, response.content
    job = response.json()
    assert job["status"] == "queued"
    params = job["params"]
    assert params["prompt"] == "a red circle"
    assert params["model"] == "demo"
    assert params["width"] == 64
    assert params["height"] == 64
    assert params["steps"] == 20
    assert params["scheduler"] == "Euler"
    assert 0 <= params["seed"] < 2**32  # a random seed, recorded
    assert params["num_images"] == 2
    assert job["queue_position"] == 1
    assert sent == [(job["id"], "gpu")]


def test_numbers_must_be_json_numbers(artist_client, team):
    """The typed boundary is strict: "128" is text, not a number (the generate page sends numbers)."""
    response = post_job(
        artist_client,
        team["project"],
        {"prompt": "a star", "width": "128", "steps": "10", "guidance_scale": "7.5", "seed": "7"},
    )
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert errors["width"] == errors["steps"] == errors["seed"] == ["Enter a whole number."]
    assert errors["guidance_scale"] == ["Enter a number."]
    assert Job.objects.count() == 0


def test_no_model_installed_is_a_clear_error(client, db, settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "empty"
    alice = factories.user("alice")
    p = factories.project(alice)
    client.force_login(alice)
    response = post_job(client, p, {"prompt": "anything"})
    assert response.status_code == 400
    assert "No model is installed" in response.json()["error"]
