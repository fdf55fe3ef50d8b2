"""Deletion means gone. An image takes its mask with it, and its job's prompt once the job has no image
left; a job's own mask leaves storage when the job ends. A project, deleted by a lead or an admin who types
its name, takes its jobs, images, thumbnails, masks, boards, tags, comments and notifications with it, from
the filesystem and from S3, and leaves one audit event saying so."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.files.storage import default_storage

from gallery import services as gallery_services
from gallery.models import Asset, Board, Comment, Notification, Review, Tag
from generation import realtime, services
from generation.models import Job
from generation.tasks import run_job
from studio import quotas
from studio.models import AuditEvent, Membership, Project, QuotaLimit, QuotaScope, QuotaUsage
from tests import factories
from tests.unit.test_modes import mask_url, start_image
from tests.unit.test_s3_storage import stored_names

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_broker(monkeypatch, demo_model_dir):
    monkeypatch.setattr(services, "enqueue", lambda job_id, queue: None)
    cache.clear()


def inpaint(team, start, **body):
    return services.do_create_job(
        team["bob"],
        team["project"],
        {"prompt": "a green star", "negative_prompt": "blurry", "mode": "inpaint", "seed": 3,
         "init_asset": str(start.id), "mask": mask_url(), "steps": 2, **body},
    )  # fmt: skip


def test_a_jobs_mask_leaves_storage_when_the_job_ends(team):
    start = start_image(team)
    done, canceled = inpaint(team, start), inpaint(team, start)
    masks = [done.params["mask"], canceled.params["mask"]]
    assert all(default_storage.exists(name) for name in masks)
    services.do_cancel_job(team["bob"], canceled)
    assert run_job(str(done.id)) == "succeeded"
    assert not any(default_storage.exists(name) for name in masks)
    assert Asset.objects.get(job=done).mask  # the image keeps its own copy


def test_deleting_a_jobs_last_image_takes_its_mask_and_the_jobs_prompt(client, team):
    start = start_image(team)
    job = inpaint(team, start, num_images=2)
    assert run_job(str(job.id)) == "succeeded"
    first, second = Asset.objects.filter(job=job).order_by("index")
    files = [first.file.name, first.thumbnail.name, first.mask.name]
    client.force_login(team["alice"])
    assert client.delete(f"/api/v1/assets/{first.id}").status_code == 204
    assert not any(default_storage.exists(name) for name in files)
    assert client.get(f"/api/v1/jobs/{job.id}").json()["params"]["prompt"] == "a green star"  # one left

    assert client.delete(f"/api/v1/assets/{second.id}").status_code == 204
    body = client.get(f"/api/v1/jobs/{job.id}").json()
    assert "a green star" not in str(body) and "blurry" not in str(body)
    assert body["params"]["prompt"] == "" and body["params"]["negative_prompt"] == ""
    assert body["params"]["steps"] == 2  # what the job was, apart from the words
    assert "a green star" not in client.get(f"/jobs/{job.id}/").content.decode()
    assert "a green star" not in client.get("/p/poster/").content.decode()


def populate(team):
    """A project with something of every kind that lives in it, made by its members."""
    project, alice, bob = team["project"], team["alice"], team["bob"]
    start = start_image(team)
    job = inpaint(team, start)
    assert run_job(str(job.id)) == "succeeded"
    queued = inpaint(team, start)  # still waiting, its mask in storage
    made = Asset.objects.get(job=job)
    gallery_services.do_submit(bob, made)
    gallery_services.do_review(alice, made, "approve", "lovely")
    gallery_services.do_comment(bob, made, "thanks")
    board = gallery_services.do_create_board(bob, project, "Picks")
    gallery_services.do_add_to_board(bob, board, made)
    gallery_services.do_tag(bob, made, "hero")
    gallery_services.do_favourite(bob, made)
    quotas.do_set_limits(team["root"], QuotaScope.PROJECT, {"images": 100}, project=project)
    return job, queued, made


def test_a_lead_deletes_a_project_and_everything_in_it_leaves_both_storages(
    client, team, backend, django_capture_on_commit_callbacks
):
    job, queued, made = populate(team)
    other = factories.project(team["alice"], "Other")
    kept = factories.asset(other, team["alice"])
    assert stored_names(backend) >= {
        made.file.name,
        made.thumbnail.name,
        made.mask.name,
        queued.params["mask"],
    }
    before = AuditEvent.objects.filter(project_slug="poster").count()

    client.force_login(team["alice"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.delete("/api/v1/projects/poster?confirm=poster")
    assert response.status_code == 204
    assert not Project.objects.filter(slug="poster").exists()
    assert not Job.objects.exists() and list(Asset.objects.all()) == [kept]
    assert not (Board.objects.exists() or Tag.objects.exists() or Comment.objects.exists())
    assert not (Review.objects.exists() or Notification.objects.exists())
    assert not Membership.objects.exclude(project=other).exists()
    assert not QuotaLimit.objects.filter(scope=QuotaScope.PROJECT).exists()
    assert not QuotaUsage.objects.filter(subject="project", subject_id=team["project"].pk).exists()
    assert stored_names(backend) == {kept.file.name}

    deleted = AuditEvent.objects.filter(action="project.delete")
    assert deleted.count() == 1
    event = deleted.get()
    assert (event.actor_name, event.target, event.project_slug) == ("alice", "project:poster", "poster")
    assert event.details == {"jobs": 2, "assets": 2, "boards": 1}
    # What happened in the project before stays in the trail (it holds no prompts).
    assert AuditEvent.objects.filter(project_slug="poster").count() == before + 1
    assert client.get(f"/api/v1/jobs/{job.id}").status_code == 404
    assert client.delete("/api/v1/projects/poster?confirm=poster").status_code == 404


@pytest.mark.parametrize(
    ("who", "confirm", "status"),
    [
        ("alice", "", 400),
        ("alice", "Poster-", 400),
        ("root", "wrong", 400),
        ("bob", "poster", 403),
        ("vera", "poster", 403),
        ("charlie", "poster", 404),
    ],
)
def test_a_project_is_deleted_only_by_its_leads_and_admins_who_name_it(client, team, who, confirm, status):
    client.force_login(team[who])
    response = client.delete(f"/api/v1/projects/poster?confirm={confirm}")
    assert response.status_code == status
    if status == 400:
        assert response.json()["errors"]["confirm"] == ["Type the project's name, Poster, to confirm."]
    assert Project.objects.filter(slug="poster").exists()
    assert not AuditEvent.objects.filter(action="project.delete").exists()


def test_the_settings_page_deletes_the_project_once_its_name_is_typed(
    client, team, django_capture_on_commit_callbacks
):
    populate(team)
    client.force_login(team["bob"])
    assert 'id="delete-project"' not in client.get("/p/poster/settings/").content.decode()
    client.force_login(team["alice"])
    page = client.get("/p/poster/settings/").content.decode()
    assert 'id="delete-project"' in page
    assert "2 jobs and 2 images" in page
    refused = client.post("/p/poster/delete/", {"confirm": "poster please"})
    assert refused.status_code == 400
    assert "Type the project&#x27;s name, Poster, to confirm." in refused.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/p/poster/delete/", {"confirm": "Poster"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert "Poster was deleted" in client.get("/").content.decode()
    assert not Project.objects.filter(slug="poster").exists()


def test_running_jobs_of_a_deleted_project_are_told_to_stop(client, team, django_capture_on_commit_callbacks):
    start = start_image(team)
    job = inpaint(team, start)
    Job.claim(job.id, "w")
    cache.set(realtime.preview_cache_key(job.id), {"type": "preview", "image": "data:image/jpeg;base64,AA"})
    client.force_login(team["root"])
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete("/api/v1/projects/poster?confirm=poster").status_code == 204
    assert services.cancel_requested_fast(job.id)
    assert cache.get(realtime.preview_cache_key(job.id)) is None


def test_the_openapi_schema_describes_deleting_a_project(client, team):
    client.force_login(team["bob"])
    operation = client.get("/api/v1/openapi.json").json()["paths"]["/projects/{slug}"]["delete"]
    assert "204" in operation["responses"]
    assert {p["name"] for p in operation["parameters"]} == {"slug", "confirm"}
