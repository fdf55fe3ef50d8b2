"""Reviews: Bob submits his image, Alice (his lead) decides, Bob hears of it; Vera watches and comments but
decides nothing; Charlie, outside the project, finds none of it."""

from __future__ import annotations

import json

import pytest
from django.test import RequestFactory

from gallery import services
from gallery.context_processors import unread_notifications
from gallery.models import AssetStatus, Comment, Notification, Review
from generation import realtime
from studio import audit
from studio.errors import Conflict
from studio.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db


def post_json(client, url, body=None):
    return client.post(url, data=json.dumps(body or {}), content_type="application/json")


@pytest.fixture
def draft(team):
    return factories.asset(team["project"], team["bob"])


@pytest.fixture
def submitted(team):
    return factories.asset(team["project"], team["bob"], status=AssetStatus.SUBMITTED)


@pytest.fixture
def sent(monkeypatch):
    """Project events sent to the channel layer (after commit)."""
    events: list[tuple[str, dict]] = []
    monkeypatch.setattr(realtime, "send_project_event", lambda slug, payload: events.append((slug, payload)))
    return events


def test_bob_submits_alice_approves_and_bob_is_told(
    client, team, draft, sent, django_capture_on_commit_callbacks
):
    client.force_login(team["bob"])
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(client, f"/api/v1/assets/{draft.id}/submit")
    assert response.status_code == 200
    assert response.json()["status"] == "submitted"

    client.force_login(team["alice"])
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(
            client, f"/api/v1/assets/{draft.id}/review", {"decision": "approve", "comment": "Lovely red."}
        )
    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    draft.refresh_from_db()
    assert draft.status == AssetStatus.APPROVED

    # The history, for every member.
    client.force_login(team["vera"])
    history = client.get(f"/api/v1/assets/{draft.id}/reviews").json()
    assert [(r["decision"], r["comment"], r["by"]) for r in history] == [("approve", "Lovely red.", "alice")]

    # Audited with the decision, never the comment.
    event = AuditEvent.objects.get(action=audit.ASSET_REVIEW)
    assert event.actor == team["alice"] and event.target == f"asset:{draft.id}"
    assert event.details == {"asset": str(draft.id), "decision": "approve"}
    assert "Lovely" not in json.dumps(event.details)

    # The project stream heard both, the decision with the asset and the review.
    assert [payload["type"] for _, payload in sent] == ["asset.submitted", "asset.reviewed"]
    slug, reviewed = sent[1]
    assert slug == "poster"
    assert reviewed["asset"]["id"] == str(draft.id) and reviewed["asset"]["status"] == "approved"
    assert reviewed["review"]["decision"] == "approve" and reviewed["review"]["by"] == "alice"

    # Bob has one unread notification: the header says so until he marks it read.
    note = Notification.objects.get()
    assert note.user == team["bob"] and note.asset == draft and note.read_at is None
    client.force_login(team["bob"])
    page = client.get("/notifications/").content.decode()
    assert 'id="unread-count"' in page and "approved" in page
    assert client.get("/api/v1/me/notifications").json()["unread"] == 1
    assert client.post("/notifications/read/").status_code == 302
    assert 'id="unread-count"' not in client.get("/notifications/").content.decode()
    assert client.get("/api/v1/me/notifications").json()["unread"] == 0


@pytest.mark.parametrize(("who", "status"), [("vera", 403), ("bob", 403), ("charlie", 404)])
def test_only_leads_and_admins_decide(client, team, submitted, who, status):
    client.force_login(team[who])
    response = post_json(client, f"/api/v1/assets/{submitted.id}/review", {"decision": "approve"})
    assert response.status_code == status
    assert response.json()["error"]
    submitted.refresh_from_db()
    assert submitted.status == AssetStatus.SUBMITTED
    assert not Review.objects.exists()
    assert client.get(f"/api/v1/assets/{submitted.id}/reviews").status_code == (
        404 if who == "charlie" else 200
    )


def test_a_site_admin_decides_in_any_project(client, team, submitted):
    client.force_login(team["root"])
    response = post_json(client, f"/api/v1/assets/{submitted.id}/review", {"decision": "reject"})
    assert response.status_code == 200 and response.json()["status"] == "rejected"


def test_the_decision_buttons_are_for_leads_only(client, team, submitted):
    for who, sees in (("alice", True), ("root", True), ("bob", False), ("vera", False)):
        client.force_login(team[who])
        page = client.get(f"/assets/{submitted.id}/").content.decode()
        assert ('id="approve-btn"' in page) is sees, who
        assert ('id="reject-btn"' in page) is sees, who
        assert ('id="changes-btn"' in page) is sees, who
        assert ('id="review-comment"' in page) is sees, who
    client.force_login(team["charlie"])
    assert client.get(f"/assets/{submitted.id}/").status_code == 404


def test_the_submit_button_is_for_the_author_and_leads_while_submittable(client, team, draft):
    for who, sees in (("bob", True), ("alice", True), ("vera", False)):
        client.force_login(team[who])
        assert ('id="submit-btn"' in client.get(f"/assets/{draft.id}/").content.decode()) is sees, who
    client.force_login(team["bob"])
    assert client.post(f"/assets/{draft.id}/submit/").status_code == 302
    page = client.get(f"/assets/{draft.id}/").content.decode()
    assert 'id="submit-btn"' not in page
    assert "Submitted" in page


def test_only_submitted_assets_can_be_decided(client, team, draft):
    client.force_login(team["alice"])
    response = post_json(client, f"/api/v1/assets/{draft.id}/review", {"decision": "approve"})
    assert response.status_code == 409
    assert "submitted" in response.json()["error"]
    assert not Review.objects.exists() and not Notification.objects.exists()


def test_a_bad_decision_is_400(client, team, submitted):
    client.force_login(team["alice"])
    response = post_json(client, f"/api/v1/assets/{submitted.id}/review", {"decision": "maybe"})
    assert response.status_code == 400
    assert "decision" in response.json()["errors"]
    response = post_json(
        client, f"/api/v1/assets/{submitted.id}/review", {"decision": "approve", "comment": 3}
    )
    assert response.status_code == 400
    response = post_json(
        client, f"/api/v1/assets/{submitted.id}/review", {"decision": "approve", "comment": "x" * 5001}
    )
    assert response.status_code == 400
    submitted.refresh_from_db()
    assert submitted.status == AssetStatus.SUBMITTED


def test_two_leads_deciding_at_once_leave_one_decision(team, submitted):
    """The second lead acts on the page they loaded before the first decided: the conditional update
    refuses it, whatever the stale object in memory says."""
    second_lead = factories.user("lena")
    factories.member(team["project"], second_lead, "lead")
    stale = type(submitted).objects.get(pk=submitted.pk)
    services.do_review(team["alice"], submitted, "approve")
    with pytest.raises(Conflict):
        services.do_review(second_lead, stale, "reject")
    submitted.refresh_from_db()
    assert submitted.status == AssetStatus.APPROVED
    assert list(Review.objects.values_list("decision", flat=True)) == ["approve"]
    assert Notification.objects.count() == 1


def test_changes_requested_then_resubmitted_keeps_the_history(client, team, submitted):
    client.force_login(team["alice"])
    post_json(
        client, f"/api/v1/assets/{submitted.id}/review", {"decision": "changes_requested", "comment": "Bluer"}
    )
    client.force_login(team["bob"])
    assert post_json(client, f"/api/v1/assets/{submitted.id}/submit").json()["status"] == "submitted"
    client.force_login(team["alice"])
    post_json(client, f"/api/v1/assets/{submitted.id}/review", {"decision": "approve"})
    history = client.get(f"/api/v1/assets/{submitted.id}/reviews").json()
    assert [r["decision"] for r in history] == ["changes_requested", "approve"]
    assert Notification.objects.filter(user=team["bob"]).count() == 2
    page = client.get(f"/assets/{submitted.id}/").content.decode()
    assert "Bluer" in page and "Changes requested" in page


def test_who_may_submit(client, team, draft):
    other_artist = factories.user("otto")
    factories.member(team["project"], other_artist, "artist")
    for who, status in (("vera", 403), ("otto", 403), ("charlie", 404)):
        client.force_login(team.get(who) or other_artist)
        assert post_json(client, f"/api/v1/assets/{draft.id}/submit").status_code == status, who
    client.force_login(team["alice"])
    assert post_json(client, f"/api/v1/assets/{draft.id}/submit").status_code == 200
    # Already submitted (and later decided) assets cannot be submitted again.
    assert post_json(client, f"/api/v1/assets/{draft.id}/submit").status_code == 409
    post_json(client, f"/api/v1/assets/{draft.id}/review", {"decision": "approve"})
    assert post_json(client, f"/api/v1/assets/{draft.id}/submit").status_code == 409


def test_a_lead_deciding_on_their_own_image_is_not_notified(team):
    mine = factories.asset(team["project"], team["alice"], status=AssetStatus.SUBMITTED)
    services.do_review(team["alice"], mine, "approve")
    assert not Notification.objects.exists()


def test_bulk_submit_from_the_gallery_skips_what_bob_may_not_submit(client, team):
    bobs = [factories.asset(team["project"], team["bob"]) for _ in range(2)]
    done = factories.asset(team["project"], team["bob"], status=AssetStatus.APPROVED)
    alices = factories.asset(team["project"], team["alice"])
    client.force_login(team["bob"])
    page = client.get("/p/poster/gallery/").content.decode()
    assert 'id="submit-selected"' in page and 'name="assets"' in page
    ids = [str(a.id) for a in (*bobs, done, alices)] + ["not-an-id"]
    response = client.post("/p/poster/gallery/submit/", {"assets": ids}, follow=True)
    assert "2 images submitted for review. 3 skipped" in response.content.decode()
    statuses = {a.id: a.status for a in type(done).objects.all()}
    assert [statuses[a.id] for a in bobs] == ["submitted", "submitted"]
    assert statuses[done.id] == "approved" and statuses[alices.id] == "draft"


def test_viewers_get_no_submit_selection_in_the_gallery(client, team, draft):
    client.force_login(team["vera"])
    page = client.get("/p/poster/gallery/").content.decode()
    assert 'id="submit-selected"' not in page and 'name="assets"' not in page
    assert client.post("/p/poster/gallery/submit/", {"assets": [str(draft.id)]}).status_code == 403
    draft.refresh_from_db()
    assert draft.status == AssetStatus.DRAFT


def test_deciding_from_the_asset_page(client, team, submitted):
    client.force_login(team["alice"])
    response = client.post(f"/assets/{submitted.id}/review/", {"decision": "reject", "comment": "Off brief"})
    assert response.status_code == 302
    submitted.refresh_from_db()
    assert submitted.status == AssetStatus.REJECTED
    # Deciding again: the page says why, with 409.
    response = client.post(f"/assets/{submitted.id}/review/", {"decision": "approve"})
    assert response.status_code == 409
    assert 'id="review-error"' in response.content.decode()


def test_members_comment_viewers_too_and_outsiders_find_nothing(client, team, draft):
    client.force_login(team["vera"])
    response = post_json(client, f"/api/v1/assets/{draft.id}/comments", {"text": "  Love the red.  "})
    assert response.status_code == 201
    assert response.json()["text"] == "Love the red." and response.json()["by"] == "vera"
    assert post_json(client, f"/api/v1/assets/{draft.id}/comments", {"text": "   "}).status_code == 400
    assert post_json(client, f"/api/v1/assets/{draft.id}/comments", {"text": "x" * 5001}).status_code == 400

    client.force_login(team["bob"])
    assert client.post(f"/assets/{draft.id}/comments/", {"text": "Thanks!"}).status_code == 302
    listed = client.get(f"/api/v1/assets/{draft.id}/comments").json()
    assert [(c["by"], c["text"]) for c in listed] == [("vera", "Love the red."), ("bob", "Thanks!")]
    page = client.get(f"/assets/{draft.id}/").content.decode()
    assert "Love the red." in page and 'id="comment-form"' in page

    client.force_login(team["charlie"])
    assert client.get(f"/api/v1/assets/{draft.id}/comments").status_code == 404
    assert post_json(client, f"/api/v1/assets/{draft.id}/comments", {"text": "hi"}).status_code == 404
    assert Comment.objects.count() == 2


def test_the_unread_count_is_one_query_and_none_for_anonymous_visitors(team, django_assert_num_queries):
    from django.contrib.auth.models import AnonymousUser

    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    with django_assert_num_queries(0):
        assert unread_notifications(request) == {}
    request.user = team["bob"]
    with django_assert_num_queries(1):
        assert unread_notifications(request) == {"unread_notifications": 0}
