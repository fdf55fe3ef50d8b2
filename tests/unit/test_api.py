"""The API's envelope: tokens, CSRF, JSON errors, the schema, parts not offered yet, health."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from studio.models import ApiToken
from tests import factories

pytestmark = pytest.mark.django_db


def test_tokens_are_stored_hashed_and_work_until_revoked(team):
    from studio.services import do_revoke_token

    token = factories.token(team["alice"])
    row = ApiToken.objects.get(user=team["alice"])
    assert token not in (row.digest, row.prefix + row.digest)
    assert row.digest != token
    assert len(row.digest) == 64
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert client.get("/api/v1/me", **auth).json()["username"] == "alice"
    do_revoke_token(team["alice"], row.id)
    response = client.get("/api/v1/me", **auth)
    assert response.status_code == 401
    assert "token" in response.json()["error"]


def test_a_bad_token_is_401_even_on_pages(client, team):
    assert client.get("/api/v1/me", HTTP_AUTHORIZATION="Bearer stu_nope").status_code == 401
    assert client.get("/api/v1/me", HTTP_AUTHORIZATION="Basic abc").status_code == 401


def test_a_deactivated_users_token_stops_working(team):
    token = factories.token(team["bob"])
    team["bob"].is_active = False
    team["bob"].save()
    assert Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


def test_session_writes_need_csrf_but_token_writes_do_not(team):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(team["alice"])
    response = browser.post(
        "/api/v1/projects", data=json.dumps({"name": "Teaser"}), content_type="application/json"
    )
    assert response.status_code == 403
    script = Client(enforce_csrf_checks=True)
    token = factories.token(team["alice"])
    response = script.post(
        "/api/v1/projects",
        data=json.dumps({"name": "Teaser"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 201
    assert response.json() == {"slug": "teaser", "name": "Teaser", "role": "lead"}


def test_project_names_are_validated_and_slugs_unique(client, team):
    client.force_login(team["charlie"])
    assert (
        client.post(
            "/api/v1/projects", data=json.dumps({"name": ""}), content_type="application/json"
        ).status_code
        == 400
    )
    first = client.post(
        "/api/v1/projects", data=json.dumps({"name": "Poster"}), content_type="application/json"
    )
    assert first.status_code == 201
    assert first.json()["slug"] == "poster-2"  # "poster" is Alice's, which Charlie cannot see


def test_a_long_names_second_project_has_a_slug_its_own_urls_take(client, team):
    """Two projects named with 50 characters: the second's slug is shortened to keep its suffix within the
    50 characters the project URLs take, and the project answers there."""
    client.force_login(team["charlie"])
    slugs = []
    for _ in range(2):
        made = client.post(
            "/api/v1/projects", data=json.dumps({"name": "0" * 50}), content_type="application/json"
        )
        assert made.status_code == 201
        slugs.append(made.json()["slug"])
    assert slugs == ["0" * 50, "0" * 48 + "-2"]
    assert client.get(f"/api/v1/projects/{slugs[1]}/assets").status_code == 200
    gone = client.delete(f"/api/v1/projects/{slugs[1]}?confirm={slugs[1]}")
    assert gone.status_code == 204


def test_unknown_api_paths_and_wrong_methods_answer_json(client, team):
    client.force_login(team["alice"])
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]
    response = client.delete("/api/v1/me")
    assert response.status_code == 405
    assert response.json()["error"]


def test_the_openapi_schema_describes_every_contract_path(client, team):
    client.force_login(team["bob"])
    schema = client.get("/api/v1/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    for path in (
        "/me",
        "/models",
        "/projects",
        "/projects/{slug}/jobs",
        "/jobs/{id}",
        "/jobs/{id}/cancel",
        "/projects/{slug}/assets",
        "/assets/{id}",
        "/assets/{id}/image",
        "/projects/{slug}/members",
    ):
        assert path in schema["paths"], path


def test_models_lists_the_installed_models(client, team, demo_model_dir):
    client.force_login(team["bob"])
    models = client.get("/api/v1/models").json()
    demo = next(m for m in models if m["id"] == "demo")
    assert demo["family"] == "demo"
    assert demo["default_width"] == 64
    assert demo["default_steps"] == 20
    assert "Euler a" in demo["schedulers"]
    assert demo["modes"] == ["txt2img", "img2img", "inpaint", "outpaint", "variation", "upscale"]


def test_healthz_and_readyz(client):
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")  # the test settings have no broker and no worker
    assert response.status_code == 503
    assert response.json()["database"] == "ok"
    assert response.json()["workers"] == 0


def test_studio_token_prints_a_working_token(team):
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("studio_token", "bob", stdout=out)
    token = out.getvalue().strip()
    assert Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {token}").json()["username"] == "bob"
