"""Who sees what: member, viewer, outsider and anonymous, for pages and the API. Invisible means 404."""

from __future__ import annotations

import json

import pytest

from generation.models import Job
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(team, demo_model_dir):
    return Job.objects.create(
        project=team["project"],
        created_by=team["bob"],
        model_id="demo",
        params=factories.job_params(),
        queue="gpu",
        progress_total=20,
    )


def as_user(client, user):
    if user is not None:
        client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("who", "expected"), [("alice", 200), ("bob", 200), ("vera", 200), ("root", 200), ("charlie", 404)]
)
def test_project_pages_and_api_are_visible_to_members_only(client, team, job, who, expected):
    as_user(client, team[who])
    slug = team["project"].slug
    for url in (
        f"/p/{slug}/",
        f"/p/{slug}/gallery/",
        f"/jobs/{job.id}/",
        f"/api/v1/jobs/{job.id}",
        f"/api/v1/projects/{slug}/jobs",
        f"/api/v1/projects/{slug}/assets",
    ):
        assert client.get(url).status_code == expected, url


def test_anonymous_users_are_sent_to_sign_in_and_the_api_answers_401(client, team, job):
    slug = team["project"].slug
    for url in ("/", f"/p/{slug}/", f"/p/{slug}/gallery/", f"/jobs/{job.id}/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url
    for url in ("/api/v1/me", f"/api/v1/jobs/{job.id}", "/api/v1/models", "/api/v1/projects"):
        response = client.get(url)
        assert response.status_code == 401, url
        assert response.json()["error"]


def test_a_viewer_cannot_generate(client, team, demo_model_dir):
    as_user(client, team["vera"])
    response = client.post(
        f"/api/v1/projects/{team['project'].slug}/jobs",
        data=json.dumps({"prompt": "hi"}),
        content_type="application/json",
    )
    assert response.status_code == 403
    assert Job.objects.count() == 0
    page = client.get(f"/p/{team['project'].slug}/")
    assert b"generate-form" not in page.content


def test_an_outsider_cannot_generate_or_learn_the_project_exists(client, team, demo_model_dir):
    as_user(client, team["charlie"])
    response = client.post(
        f"/api/v1/projects/{team['project'].slug}/jobs",
        data=json.dumps({"prompt": "hi"}),
        content_type="application/json",
    )
    assert response.status_code == 404
    assert (
        client.post(
            "/api/v1/projects/does-not-exist/jobs", data="{}", content_type="application/json"
        ).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("who", "expected"), [("bob", 202), ("alice", 202), ("root", 202), ("vera", 403), ("charlie", 404)]
)
def test_who_may_cancel_a_job(client, team, job, who, expected):
    as_user(client, team[who])
    response = client.post(f"/api/v1/jobs/{job.id}/cancel")
    assert response.status_code == expected
    job.refresh_from_db()
    assert (job.status == "canceled") == (expected == 202)


def test_an_artist_cannot_cancel_another_artists_job(client, team, job):
    dana = factories.user("dana")
    factories.member(team["project"], dana, "artist")
    as_user(client, dana)
    assert client.post(f"/api/v1/jobs/{job.id}/cancel").status_code == 403


def test_cancelling_a_finished_job_is_a_conflict(client, team, job):
    Job.objects.filter(id=job.id).update(status="succeeded")
    as_user(client, team["bob"])
    response = client.post(f"/api/v1/jobs/{job.id}/cancel")
    assert response.status_code == 409
    assert "already succeeded" in response.json()["error"]


def test_malformed_ids_are_404_not_500(client, team):
    as_user(client, team["alice"])
    for url in (
        "/api/v1/jobs/not-a-uuid",
        "/api/v1/assets/123",
        "/jobs/zzz/",
        "/assets/zzz/",
        "/assets/zzz/image.png",
        "/api/v1/assets/zzz/image",
    ):
        assert client.get(url).status_code == 404, url


def test_members_add_only_by_leads(client, team):
    slug = team["project"].slug
    eve = factories.user("eve")
    as_user(client, team["bob"])
    body = json.dumps({"username": "eve", "role": "viewer"})
    assert (
        client.post(
            f"/api/v1/projects/{slug}/members", data=body, content_type="application/json"
        ).status_code
        == 403
    )
    client.force_login(team["alice"])
    response = client.post(f"/api/v1/projects/{slug}/members", data=body, content_type="application/json")
    assert response.status_code == 201
    assert team["project"].memberships.get(user=eve).role == "viewer"
    bad = client.post(
        f"/api/v1/projects/{slug}/members",
        data=json.dumps({"username": "nobody", "role": "boss"}),
        content_type="application/json",
    )
    assert bad.status_code == 400
    assert set(bad.json()["errors"]) == {"role"}
    client.force_login(team["charlie"])
    assert (
        client.post(
            f"/api/v1/projects/{slug}/members", data=body, content_type="application/json"
        ).status_code
        == 404
    )


def test_me_lists_the_callers_projects_and_roles(client, team):
    as_user(client, team["vera"])
    data = client.get("/api/v1/me").json()
    assert data == {
        "username": "vera",
        "is_admin": False,
        "projects": [{"slug": "poster", "name": "Poster", "role": "viewer"}],
    }
    client.force_login(team["charlie"])
    assert client.get("/api/v1/projects").json() == []
    client.force_login(team["root"])
    assert client.get("/api/v1/me").json()["is_admin"] is True
    assert [p["slug"] for p in client.get("/api/v1/projects").json()] == ["poster"]
