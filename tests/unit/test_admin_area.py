"""The site admin area: root manages users, reads usage and the audit log. For Alice (a lead), Bob (an
artist), Vera (a viewer) and Charlie (an outsider) none of it exists; anonymous visitors must sign in."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gallery.models import Asset
from generation import realtime
from generation import services as generation_services
from generation.models import Job, JobStatus
from studio import audit, services, usage
from studio.errors import InvalidInput, NotAllowed
from studio.models import ApiToken, AuditEvent, User, UserSession
from tests import factories

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"  # the factories' password

MANAGE_PAGES = [
    "/manage/",
    "/manage/users/",
    "/manage/users/new/",
    "/manage/users/bob/deactivate/",
    "/manage/usage/",
    "/manage/audit/",
    "/manage/audit/export.csv",
    "/manage/workers/",
]
ADMIN_API = [
    ("get", "/api/v1/admin/users"),
    ("post", "/api/v1/admin/users/bob/deactivate"),
    ("get", "/api/v1/admin/audit"),
    ("get", "/api/v1/admin/workers"),
]


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def streamed(response) -> str:
    return b"".join(response.streaming_content).decode()


# --- who may enter --


@pytest.mark.parametrize("who", ["alice", "bob", "vera", "charlie"])
def test_the_admin_area_does_not_exist_for_anyone_but_admins(team, who):
    client = signed_in(team[who])
    for url in MANAGE_PAGES:
        assert client.get(url).status_code == 404, url
    for url in ("/manage/users/new/", "/manage/users/bob/deactivate/"):
        assert client.post(url, {"username": "mallory", "password": "x" * 20}).status_code == 404, url
    for method, url in ADMIN_API:
        response = getattr(client, method)(url)
        assert response.status_code == 404, url
        assert response.json()["error"]
    token = factories.token(team[who])
    assert Client().get("/api/v1/admin/users", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 404
    assert User.objects.get(username="bob").is_active
    assert not User.objects.filter(username="mallory").exists()
    assert b'href="/manage/users/"' not in client.get("/").content


def test_anonymous_visitors_are_sent_to_sign_in_and_the_api_answers_401(client, team):
    for url in MANAGE_PAGES:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url
    for method, url in ADMIN_API:
        response = getattr(client, method)(url)
        assert response.status_code == 401, url
        assert response.json()["error"]


def test_an_admin_finds_the_area_from_the_header_and_every_page_answers(team):
    root = signed_in(team["root"])
    home = root.get("/").content.decode()
    assert 'href="/manage/users/"' in home and ">Manage<" in home
    assert root.get("/manage/")["Location"] == "/manage/users/"
    for url in MANAGE_PAGES[1:]:
        assert root.get(url).status_code == 200, url
    page = root.get("/manage/usage/").content.decode()
    for link in ("/manage/users/", "/manage/usage/", "/manage/audit/"):
        assert f'href="{link}"' in page  # the sub-navigation
    token = factories.token(team["root"])
    assert Client().get("/api/v1/admin/users", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


# --- users --


def test_an_admin_creates_a_user_who_can_then_sign_in(team):
    root = signed_in(team["root"])
    response = root.post(
        "/manage/users/new/",
        {"username": "dana", "email": "dana@studio.test", "password": "a long new passphrase"},
        REMOTE_ADDR="10.1.2.3",
    )
    assert response.status_code == 302 and response["Location"] == "/manage/users/"
    dana = User.objects.get(username="dana")
    assert (dana.email, dana.is_active, dana.is_superuser) == ("dana@studio.test", True, False)
    event = AuditEvent.objects.get(action=audit.USER_CREATE)
    assert (event.actor, event.target, event.ip, event.details) == (
        team["root"],
        "user:dana",
        "10.1.2.3",
        {"is_admin": False},
    )
    assert "passphrase" not in json.dumps(event.details)
    assert Client().login(username="dana", password="a long new passphrase")
    users_page = root.get("/manage/users/").content.decode()
    assert 'data-username="dana"' in users_page

    erin = services.do_create_user(team["root"], "erin", "", "another long passphrase", is_admin=True)
    assert erin.is_superuser and erin.is_staff


def test_creating_a_user_reports_every_bad_field_and_creates_nothing(team):
    root = signed_in(team["root"])
    response = root.post("/manage/users/new/", {"username": "BOB", "email": "not-an-email", "password": ""})
    assert response.status_code == 400
    assert set(response.context["errors"]) == {"username", "email", "password"}
    assert b"That username is taken." in response.content
    with pytest.raises(InvalidInput) as weak:
        services.do_create_user(team["root"], "dana", "bob@studio.test", "123")
    assert set(weak.value.errors) == {"email", "password"}
    with pytest.raises(InvalidInput) as odd:
        services.do_create_user(team["root"], "dana smith", "", "a long new passphrase", is_admin="yes")
    assert set(odd.value.errors) == {"username", "is_admin"}
    with pytest.raises(NotAllowed):
        services.do_create_user(team["alice"], "dana", "", "a long new passphrase")
    assert not User.objects.filter(username__in=["dana", "dana smith"]).exists()
    assert not AuditEvent.objects.filter(action=audit.USER_CREATE).exists()


def test_deactivation_ends_sessions_tokens_and_sockets_and_is_audited(
    team, django_capture_on_commit_callbacks
):
    bob = team["bob"]
    browser = Client()
    assert browser.login(username="bob", password=PASSWORD)
    assert browser.get("/").status_code == 200
    session_key = browser.cookies["sessionid"].value
    assert UserSession.objects.filter(user=bob, session_key=session_key).exists()
    token = factories.token(bob)
    script = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert script.get("/api/v1/me").status_code == 200

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(realtime.user_group(bob.id), channel)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = signed_in(team["root"]).post("/api/v1/admin/users/bob/deactivate")
        assert response.status_code == 200
        assert response.json() == {"username": "bob", "is_active": False}
        message = async_to_sync(layer.receive)(channel)
    finally:
        async_to_sync(layer.group_discard)(realtime.user_group(bob.id), channel)
    assert message == {"type": realtime.HANDLER, "payload": {"type": realtime.SESSION_END}}

    bob.refresh_from_db()
    assert not bob.is_active
    after = browser.get("/")
    assert after.status_code == 302 and after["Location"].startswith("/accounts/login/")
    assert not Session.objects.filter(session_key=session_key).exists()
    assert not UserSession.objects.filter(user=bob).exists()
    assert script.get("/api/v1/me").status_code == 401
    assert not ApiToken.objects.filter(user=bob, revoked_at__isnull=True).exists()
    event = AuditEvent.objects.get(action=audit.USER_DEACTIVATE)
    assert (event.actor, event.target) == (team["root"], "user:bob")
    assert event.details == {"sessions_ended": 1, "tokens_revoked": 1}
    assert not Client().login(username="bob", password=PASSWORD)


def test_the_page_asks_before_deactivating_and_the_list_shows_it(team):
    root = signed_in(team["root"])
    confirm = root.get("/manage/users/bob/deactivate/")
    assert b'id="deactivate-user"' in confirm.content
    response = root.post("/manage/users/bob/deactivate/", REMOTE_ADDR="10.9.9.9")
    assert response.status_code == 302 and response["Location"] == "/manage/users/"
    assert not User.objects.get(username="bob").is_active
    assert AuditEvent.objects.get(action=audit.USER_DEACTIVATE).ip == "10.9.9.9"
    page = root.get("/manage/users/").content.decode()
    assert 'class="inactive" data-username="bob"' in page
    assert "/manage/users/bob/deactivate/" not in page
    # Again: harmless, and not a second event.
    assert root.post("/api/v1/admin/users/bob/deactivate").json() == {"username": "bob", "is_active": False}
    assert AuditEvent.objects.filter(action=audit.USER_DEACTIVATE).count() == 1
    assert root.post("/api/v1/admin/users/nobody/deactivate").status_code == 404
    assert root.get("/manage/users/nobody/deactivate/").status_code == 404


def test_an_admin_cannot_deactivate_themselves(team):
    root = signed_in(team["root"])
    response = root.post("/api/v1/admin/users/root/deactivate")
    assert response.status_code == 403
    assert "your own account" in response.json()["error"]
    page = root.get("/manage/users/root/deactivate/")
    assert b"You cannot deactivate your own account" in page.content
    assert b'id="deactivate-user"' not in page.content
    followed = root.post("/manage/users/root/deactivate/", follow=True)
    assert b"You cannot deactivate your own account" in followed.content
    with pytest.raises(NotAllowed):
        services.do_deactivate_user(team["root"], team["root"])
    assert User.objects.get(username="root").is_active
    assert not AuditEvent.objects.filter(action=audit.USER_DEACTIVATE).exists()


# --- usage --


def finished_job(
    project, user, *, at: datetime, gpu: float, images: int = 0, status=JobStatus.SUCCEEDED
) -> Job:
    job = Job.objects.create(
        project=project,
        created_by=user,
        status=status,
        model_id="demo",
        params=factories.job_params(prompt="a shape"),
        queue="gpu",
        gpu_seconds=gpu,
        finished_at=at,
    )
    for i in range(images):
        Asset.objects.create(
            project=project,
            job=job,
            index=i,
            file=f"assets/x/{job.id}-{i}.png",
            width=64,
            height=64,
            seed=i,
            prompt="a shape",
            params=factories.job_params(),
            model_id="demo",
            model_name="Demo",
            model_sha256="0" * 64,
            created_by=user,
        )
    return job


@pytest.fixture
def used(team):
    """Bob: two succeeded jobs (3 images), one failed (GPU time, no images) this month, one last month.
    Alice: one job in a second project. A queued job has used nothing yet."""
    now = timezone.now()
    month = usage.current_month()
    last_month = month.start - timedelta(days=3)
    moodboard = factories.project(team["alice"], "Moodboard")
    poster = team["project"]
    finished_job(poster, team["bob"], at=now, gpu=10, images=2)
    finished_job(poster, team["bob"], at=now, gpu=5.5, images=1)
    finished_job(poster, team["bob"], at=now, gpu=2.5, status=JobStatus.FAILED)
    finished_job(poster, team["bob"], at=last_month, gpu=100, images=7)
    finished_job(moodboard, team["alice"], at=now, gpu=20, images=4)
    Job.objects.create(
        project=poster, created_by=team["vera"], model_id="demo", params=factories.job_params(), queue="gpu"
    )
    return {"moodboard": moodboard, "last_month": f"{last_month.astimezone(UTC):%Y-%m}"}


def test_usage_per_user_and_per_project_this_month_and_before(team, used):
    root = signed_in(team["root"])
    response = root.get("/manage/usage/")
    assert response.status_code == 200
    by_user = {r.label: (r.images, r.gpu_seconds) for r in response.context["by_user"]}
    assert by_user == {"bob": (3, 18.0), "alice": (4, 20.0)}
    by_project = {r.label: (r.images, r.gpu_seconds) for r in response.context["by_project"]}
    assert by_project == {"poster": (3, 18.0), "moodboard": (4, 20.0)}
    assert response.context["totals"] == {"images": 7, "gpu_seconds": 38.0}
    page = response.content.decode()
    assert page.count('<svg class="bar-chart"') == 4
    assert "<script" not in page.split("<main", 1)[1].split("</main>", 1)[0]  # drawn by the server
    assert 'src="http' not in page and 'href="http' not in page  # nothing from outside the studio

    before = root.get(f"/manage/usage/?period={used['last_month']}")
    assert [(r.label, r.images, r.gpu_seconds) for r in before.context["by_user"]] == [("bob", 7, 100.0)]

    for bad in ("2026-13", "last month", "0000-01"):
        response = root.get("/manage/usage/", {"period": bad})
        assert response.status_code == 400, bad
        assert b"Enter a month as YYYY-MM." in response.content

    users = {u["username"]: u for u in root.get("/api/v1/admin/users").json()}
    assert users["bob"] == {
        "username": "bob",
        "is_active": True,
        "is_admin": False,
        "usage": {"images": 3, "gpu_seconds": 18.0},
    }
    assert users["charlie"]["usage"] == {"images": 0, "gpu_seconds": 0}
    assert users["root"]["is_admin"] is True
    users_page = root.get("/manage/users/")
    row = next(r for r in users_page.context["rows"] if r["user"].username == "alice")
    assert (row["usage"].images, row["usage"].gpu_seconds) == (4, 20.0)


def test_usage_pages_take_the_same_number_of_queries_however_many_users(
    team, used, django_assert_max_num_queries
):
    root = signed_in(team["root"])
    urls = ("/manage/usage/", "/manage/users/", "/api/v1/admin/users")

    def counts() -> list[int]:
        found = []
        for url in urls:
            with CaptureQueriesContext(connection) as queries:
                assert root.get(url).status_code == 200
            found.append(len(queries))
        return found

    small = counts()
    now = timezone.now()
    for i in range(6):
        person = factories.user(f"extra{i}")
        place = factories.project(person, f"Place {i}")
        finished_job(place, person, at=now, gpu=1 + i, images=2)
    assert counts() == small
    for url in urls:
        with django_assert_max_num_queries(8):
            root.get(url)


# --- the audit log --


def record_at(monkeypatch, when: datetime, actor, action: str, **kwargs) -> AuditEvent:
    monkeypatch.setattr(timezone, "now", lambda: when)
    try:
        return audit.record(actor, action, **kwargs)
    finally:
        monkeypatch.undo()


@pytest.fixture
def history(team, monkeypatch):
    # Long past, so that sign-ins the tests make now come after all of it.
    day = datetime(2020, 3, 10, 12, 0, tzinfo=UTC)
    project = team["project"]
    record_at(monkeypatch, day, team["root"], audit.SIGN_IN, target="user:root", ip="10.0.0.1")
    record_at(
        monkeypatch, day + timedelta(days=1), team["bob"], audit.JOB_CREATE, target="job:1", project=project
    )
    record_at(
        monkeypatch,
        day + timedelta(days=2),
        team["alice"],
        audit.MEMBER_ADD,
        target="user:vera",
        project=project,
        details={"role": "viewer"},
    )
    record_at(
        monkeypatch, day + timedelta(days=3), team["bob"], audit.JOB_CANCEL, target="job:1", project=project
    )
    mallory = factories.user("+mallory")  # a spreadsheet would read the name as a formula
    record_at(monkeypatch, day + timedelta(days=4), mallory, audit.TOKEN_CREATE, target="token:stu_abc")
    return day


def test_the_audit_page_lists_newest_first_and_filters(team, history):
    root = signed_in(team["root"])

    def actions(**params) -> list[str]:
        response = root.get("/manage/audit/", params)
        assert response.status_code == 200, response.content
        return [row["event"].action for row in response.context["events"]]

    assert actions() == [
        "auth.sign_in",  # root, just now (force_login)
        "token.create",
        "job.cancel",
        "member.add",
        "job.create",
        "auth.sign_in",
    ]
    assert actions(actor="bob") == ["job.cancel", "job.create"]
    assert actions(actor="BOB", action="job.create") == ["job.create"]
    assert actions(project="poster") == ["job.cancel", "member.add", "job.create"]
    assert actions(since="2020-03-11", until="2020-03-12") == ["member.add", "job.create"]
    assert actions(since="2020-03-11T12:00:00Z", until="2020-03-12T11:59:59Z") == ["job.create"]
    assert actions(since="2020-03-13") == ["auth.sign_in", "token.create", "job.cancel"]
    assert actions(actor="nobody") == []
    page = root.get("/manage/audit/", {"action": "member.add"}).content.decode()
    assert "{&quot;role&quot;: &quot;viewer&quot;}" in page  # details as JSON
    assert 'href="/manage/audit/export.csv?action=member.add"' in page

    for params, field in (
        ({"action": "user.explode"}, "action"),
        ({"since": "2020-02-30"}, "since"),
        ({"until": "yesterday"}, "until"),
        ({"since": "2020-03-12", "until": "2020-03-11"}, "until"),
    ):
        response = root.get("/manage/audit/", params)
        assert response.status_code == 400, params
        assert field in response.context["errors"], params
        assert root.get("/manage/audit/export.csv", params).status_code == 400


def test_the_audit_page_pages_with_a_cursor(team, history):
    for i in range(60):
        audit.record(team["root"], audit.TOKEN_REVOKE, target=f"token:{i}")
    root = signed_in(team["root"])
    first = root.get("/manage/audit/", {"action": "token.revoke"})
    assert len(first.context["events"]) == 50
    assert 'rel="next"' in first.content.decode()
    second = root.get(f"/manage/audit/?{first.context['next_query']}")
    assert len(second.context["events"]) == 10
    assert second.context["next_cursor"] is None
    targets = [r["event"].target for r in first.context["events"] + second.context["events"]]
    assert targets == [f"token:{i}" for i in reversed(range(60))]
    assert root.get("/manage/audit/", {"cursor": "garbage"}).status_code == 400


def test_the_csv_export_streams_the_filtered_events(team, history):
    root = signed_in(team["root"])
    response = root.get("/manage/audit/export.csv", {"project": "poster"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="studio-audit-')
    assert response.streaming
    rows = list(csv.reader(io.StringIO(streamed(response))))
    assert rows[0] == ["time", "actor", "action", "target", "project", "ip", "details"]
    assert [r[2] for r in rows[1:]] == ["job.cancel", "member.add", "job.create"]
    member_add = rows[2]
    assert member_add[1] == "alice" and member_add[3] == "user:vera" and member_add[4] == "poster"
    assert json.loads(member_add[6]) == {"role": "viewer"}
    assert datetime.fromisoformat(member_add[0]) == history + timedelta(days=2)

    everything = list(csv.DictReader(io.StringIO(streamed(root.get("/manage/audit/export.csv")))))
    token_row = next(r for r in everything if r["action"] == "token.create")
    assert token_row["actor"] == "'+mallory"
    sign_in = [r for r in everything if r["action"] == "auth.sign_in"][-1]
    assert (sign_in["actor"], sign_in["ip"], sign_in["project"]) == ("root", "10.0.0.1", "")


def test_the_audit_api_filters_pages_and_refuses_bad_input(team, history):
    root = signed_in(team["root"])
    data = root.get("/api/v1/admin/audit", {"actor": "alice"}).json()
    assert data["next"] is None
    assert data["results"] == [
        {
            "time": (history + timedelta(days=2)).isoformat(),
            "actor": "alice",
            "action": "member.add",
            "target": "user:vera",
            "project": "poster",
            "ip": None,
            "details": {"role": "viewer"},
        }
    ]
    since = root.get("/api/v1/admin/audit", {"since": "2020-03-13", "until": "2020-12-31"}).json()["results"]
    assert [e["action"] for e in since] == ["token.create", "job.cancel"]

    for i in range(55):
        audit.record(team["bob"], audit.JOB_CREATE, target=f"job:{i}")
    seen, cursor = [], None
    while True:
        params = {"actor": "bob", "action": "job.create"} | ({"cursor": cursor} if cursor else {})
        page = root.get("/api/v1/admin/audit", params).json()
        seen += [e["target"] for e in page["results"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [f"job:{i}" for i in reversed(range(55))] + ["job:1"]

    forged = base64.urlsafe_b64encode(json.dumps([history.isoformat(), "not-an-id"]).encode()).decode()
    for params, field in (
        ({"action": "nope"}, "action"),
        ({"since": "2020-13-01"}, "since"),
        ({"since": "soon"}, "since"),
        ({"cursor": "%%%"}, "cursor"),
        ({"cursor": forged}, "cursor"),
    ):
        response = root.get("/api/v1/admin/audit", params)
        assert response.status_code == 400, params
        body = response.json()
        assert body["error"] and field in body["errors"], params


def test_audit_events_cannot_be_changed_or_deleted(team):
    event = audit.record(team["alice"], audit.MEMBER_ADD, target="user:bob", project=team["project"])
    event.target = "user:someone-else"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(target="user:someone-else")
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).target == "user:bob"


def test_events_outlive_the_project_and_user_they_name(team):
    temp = factories.project(team["alice"], "Temp")
    dana = factories.user("dana")
    audit.record(dana, audit.PROJECT_CREATE, target="project:temp", project=temp)
    temp.delete()
    dana.delete()
    event = AuditEvent.objects.get(action=audit.PROJECT_CREATE, target="project:temp")
    assert (event.actor, event.actor_name, event.project, event.project_slug) == (None, "dana", None, "temp")


# --- what is audited --


def test_sign_in_and_sign_out_are_audited_and_a_failed_sign_in_is_logged(client, team, caplog):
    wrong = "not-the-password-42"
    response = client.post("/accounts/login/", {"username": "bob", "password": wrong}, REMOTE_ADDR="10.0.0.7")
    assert response.status_code == 200
    # Anyone can fail a sign-in: the append-only trail keeps no row of it (lockouts are audited, once each).
    assert not AuditEvent.objects.exists()
    assert "failed sign-in for 'bob' from 10.0.0.7" in caplog.text

    response = client.post(
        "/accounts/login/", {"username": "bob", "password": PASSWORD}, REMOTE_ADDR="10.0.0.7"
    )
    assert response.status_code == 302
    signed = AuditEvent.objects.get(action=audit.SIGN_IN)
    assert (signed.actor, signed.target, signed.ip) == (team["bob"], "user:bob", "10.0.0.7")
    assert signed.details == {"method": "password"}
    assert UserSession.objects.filter(user=team["bob"]).count() == 1

    assert client.post("/accounts/logout/").status_code == 302
    assert AuditEvent.objects.get(action=audit.SIGN_OUT).actor == team["bob"]
    assert not UserSession.objects.filter(user=team["bob"]).exists()

    everything = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert wrong not in everything and PASSWORD not in everything


def test_jobs_tokens_and_members_are_audited(team, monkeypatch, demo_model_dir):
    monkeypatch.setattr("generation.services.enqueue", lambda *a: None)
    project = team["project"]
    job = generation_services.do_create_job(
        team["bob"], project, {"prompt": "a secret red circle", "steps": 4}, ip="10.0.0.9"
    )
    created = AuditEvent.objects.get(action=audit.JOB_CREATE)
    assert (created.actor, created.target, created.project, created.ip) == (
        team["bob"],
        f"job:{job.id}",
        project,
        "10.0.0.9",
    )
    assert "secret" not in json.dumps(created.details)  # no prompts in the audit trail
    generation_services.do_cancel_job(team["bob"], job)
    canceled = AuditEvent.objects.get(action=audit.JOB_CANCEL)
    assert (canceled.actor, canceled.target, canceled.project_slug) == (
        team["bob"],
        f"job:{job.id}",
        "poster",
    )

    row, token = services.do_create_token(team["bob"], "ci")
    services.do_revoke_token(team["bob"], row.pk)
    made = AuditEvent.objects.get(action=audit.TOKEN_CREATE, actor=team["bob"], details__name="ci")
    assert made.details == {"name": "ci", "scope": "generate", "expires_at": None}
    revoked = AuditEvent.objects.get(action=audit.TOKEN_REVOKE)
    assert made.target == revoked.target == f"token:{row.prefix}"
    assert token not in json.dumps(list(AuditEvent.objects.values()), default=str)

    services.do_add_member(team["alice"], project, "charlie", "viewer")
    services.do_add_member(team["alice"], project, "charlie", "artist")
    added = AuditEvent.objects.get(action=audit.MEMBER_ADD)
    changed = AuditEvent.objects.get(action=audit.MEMBER_ROLE)
    assert (added.actor, added.target, added.project, added.details) == (
        team["alice"],
        "user:charlie",
        project,
        {"role": "viewer"},
    )
    assert (changed.target, changed.details) == ("user:charlie", {"from": "viewer", "to": "artist"})
