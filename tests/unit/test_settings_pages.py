"""Account settings (tokens, password) and project settings (members), on the pages and over the API.

Alice leads the Poster project, Bob is its artist, Vera its viewer; Charlie is in no project; root is a
site admin who is not a member.
"""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from studio import audit, services
from studio.errors import InvalidInput
from studio.models import ApiToken, AuditEvent, Membership, Role, UserSession
from tests import factories

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"
TOKEN_RE = re.compile(r"stu_[A-Za-z0-9_-]{20,}")


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def settings_url(team) -> str:
    return f"/p/{team['project'].slug}/settings/"


def member_url(team, username: str) -> str:
    return f"/api/v1/projects/{team['project'].slug}/members/{username}"


def role_of(team, username: str) -> str | None:
    return (
        Membership.objects.filter(project=team["project"], user__username=username)
        .values_list("role", flat=True)
        .first()
    )


# --- API tokens ---


def test_a_new_token_is_shown_once_and_works_as_a_bearer_token(team):
    alice = signed_in(team["alice"])
    response = alice.post("/account/tokens/", {"name": "render farm sync"})
    assert response.status_code == 200
    html = response.content.decode()
    token = TOKEN_RE.search(html).group(0)
    assert "render farm sync" in html
    assert "no-store" in response["Cache-Control"]

    # Only a digest is kept: not the token on the row, not in the session, not on the next page.
    row = ApiToken.objects.get(user=team["alice"], name="render farm sync")
    assert token not in (row.digest, row.prefix, row.name)
    assert token not in json.dumps(dict(alice.session.items()), default=str)
    again = alice.get("/account/").content.decode()
    assert token not in again
    assert f"{row.prefix}…" in again

    assert Client().get("/api/v1/me", **bearer(token)).json()["username"] == "alice"
    [event] = events(audit.TOKEN_CREATE)
    assert (event.actor, event.target, event.ip) == (team["alice"], f"token:{row.prefix}", "127.0.0.1")
    assert event.details == {"name": "render farm sync", "scope": "generate", "expires_at": None}


def test_revoking_a_token_on_the_page_makes_it_401(team):
    token = factories.token(team["alice"])
    row = ApiToken.objects.get(user=team["alice"])
    alice = signed_in(team["alice"])
    response = alice.post(f"/account/tokens/{row.id}/revoke/")
    assert response.status_code == 302 and response["Location"] == "/account/"
    assert Client().get("/api/v1/me", **bearer(token)).status_code == 401
    [event] = events(audit.TOKEN_REVOKE)
    assert (event.actor, event.target) == (team["alice"], f"token:{row.prefix}")
    page = alice.get("/account/").content.decode()
    assert "revoked" in page and "Token revoked" in page
    # Revoking twice is a clear error on the page, not a 500.
    again = alice.post(f"/account/tokens/{row.id}/revoke/")
    assert again.status_code == 404 and b"No such token." in again.content


def test_nobody_revokes_someone_elses_token(team):
    token = factories.token(team["bob"])
    row = ApiToken.objects.get(user=team["bob"])
    response = signed_in(team["alice"]).post(f"/account/tokens/{row.id}/revoke/")
    assert response.status_code == 404
    assert Client().get("/api/v1/me", **bearer(token)).status_code == 200
    assert b"stu_" not in signed_in(team["alice"]).get("/account/").content  # and never sees it listed


def test_a_token_needs_a_name(team):
    response = signed_in(team["alice"]).post("/account/tokens/", {"name": "   "})
    assert response.status_code == 400
    assert b"Give the token a name." in response.content
    assert not ApiToken.objects.exists()


def test_account_settings_need_a_password_session_not_a_token(team):
    # A token is never accepted on a page: the request is anonymous, sent to sign in.
    token = factories.token(team["alice"])
    script = Client(enforce_csrf_checks=True)
    assert script.get("/account/", **bearer(token))["Location"].startswith("/accounts/login/")
    assert script.post("/account/tokens/", {"name": "more"}, **bearer(token)).status_code == 403  # CSRF
    assert ApiToken.objects.filter(user=team["alice"]).count() == 1


def test_anonymous_visitors_are_sent_to_sign_in(team):
    client = Client()
    for method, url in (
        ("get", "/account/"),
        ("post", "/account/tokens/"),
        ("post", "/account/password/"),
        ("get", settings_url(team)),
        ("post", settings_url(team)),
    ):
        response = getattr(client, method)(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url
    assert not ApiToken.objects.exists()


def test_account_forms_need_csrf(team):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(team["alice"])
    assert browser.post("/account/tokens/", {"name": "x"}).status_code == 403
    assert browser.post(settings_url(team), {"action": "remove", "username": "bob"}).status_code == 403
    page = browser.get("/account/").content.decode()
    assert page.count("csrfmiddlewaretoken") >= 3  # sign out, new token, password


# --- password ---


def test_changing_the_password_keeps_this_session_and_ends_the_others(team):
    alice, laptop = signed_in(team["alice"]), signed_in(team["alice"])
    new = "a much longer passphrase 42"
    response = alice.post(
        "/account/password/",
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
    )
    assert response.status_code == 302 and response["Location"] == "/account/"
    assert alice.get("/account/").status_code == 200
    assert laptop.get("/account/").status_code == 302  # the other session is signed out
    # The kept session has a new key, recorded so that deactivating Alice would still end it.
    assert UserSession.objects.filter(user=team["alice"], session_key=alice.session.session_key).exists()
    team["alice"].refresh_from_db()
    assert team["alice"].check_password(new)
    [event] = events(audit.PASSWORD_CHANGE)
    assert (event.actor, event.target, event.ip) == (team["alice"], "user:alice", "127.0.0.1")
    assert new not in json.dumps(event.details)
    assert Client().login(username="alice", password=new)


def test_a_wrong_old_password_shows_the_form_error(team):
    alice = signed_in(team["alice"])
    response = alice.post(
        "/account/password/",
        {
            "old_password": "wrong",
            "new_password1": "another passphrase 7",
            "new_password2": "another passphrase 7",
        },
    )
    assert response.status_code == 400
    assert b"Your old password was entered incorrectly" in response.content
    assert b'data-field="old_password"' in response.content
    team["alice"].refresh_from_db()
    assert team["alice"].check_password(PASSWORD)
    assert not events(audit.PASSWORD_CHANGE)
    mismatch = alice.post(
        "/account/password/",
        {"old_password": PASSWORD, "new_password1": "another passphrase 7", "new_password2": "other"},
    )
    assert mismatch.status_code == 400 and b'data-field="new_password2"' in mismatch.content


def test_the_password_service_checks_a_plain_password_too(team):
    with pytest.raises(InvalidInput) as caught:
        services.do_change_password(team["bob"], "short")
    assert "new_password1" in caught.value.errors
    services.do_change_password(team["bob"], "a perfectly fine passphrase", ip="10.0.0.9")
    team["bob"].refresh_from_db()
    assert team["bob"].check_password("a perfectly fine passphrase")
    assert events(audit.PASSWORD_CHANGE)[0].ip == "10.0.0.9"


# --- project settings: members ---


def test_a_lead_adds_by_email_changes_the_role_and_removes(team):
    dana = factories.user("dana")
    alice = signed_in(team["alice"])
    page = alice.get(settings_url(team))
    assert page.status_code == 200
    assert b'id="member-add"' in page.content

    response = alice.post(
        settings_url(team), {"action": "add", "username": "DANA@studio.test", "role": "viewer"}
    )
    assert response.status_code == 302 and response["Location"] == settings_url(team)
    assert role_of(team, "dana") == "viewer"

    response = alice.post(
        settings_url(team), {"action": "role", "username": "dana", "role": "artist"}, follow=True
    )
    assert role_of(team, "dana") == "artist"
    assert "dana’s role in Poster is now artist." in response.content.decode()

    response = alice.post(settings_url(team), {"action": "remove", "username": "dana"})
    assert response.status_code == 302
    assert role_of(team, "dana") is None

    add, change, remove = events(audit.MEMBER_ADD), events(audit.MEMBER_ROLE), events(audit.MEMBER_REMOVE)
    assert [(e.target, e.details) for e in add] == [("user:dana", {"role": "viewer"})]
    assert [(e.target, e.details) for e in change] == [("user:dana", {"from": "viewer", "to": "artist"})]
    assert [(e.target, e.details) for e in remove] == [("user:dana", {"role": "artist"})]
    assert {e.actor for e in add + change + remove} == {team["alice"]}
    assert {e.project_slug for e in add + change + remove} == {"poster"}
    assert dana.is_active


@pytest.mark.parametrize("who", ["bob", "vera"])
def test_artists_and_viewers_see_the_members_read_only(team, who):
    client = signed_in(team[who])
    page = client.get(settings_url(team))
    assert page.status_code == 200
    html = page.content.decode()
    for name in ("alice", "bob", "vera"):
        assert name in html
    assert 'name="action"' not in html and "<select" not in html
    assert "Only the project’s leads can change its members." in html
    for data in (
        {"action": "add", "username": "charlie", "role": "viewer"},
        {"action": "role", "username": "vera", "role": "lead"},
        {"action": "remove", "username": "vera"},
    ):
        response = client.post(settings_url(team), data)
        assert response.status_code == 403, data
        assert b"Only the project" in response.content
    assert (role_of(team, "charlie"), role_of(team, "vera")) == (None, "viewer")
    assert not events(audit.MEMBER_ADD) + events(audit.MEMBER_ROLE) + events(audit.MEMBER_REMOVE)


def test_an_outsider_gets_404_and_an_admin_manages(team):
    charlie = signed_in(team["charlie"])
    assert charlie.get(settings_url(team)).status_code == 404
    assert charlie.post(settings_url(team), {"action": "remove", "username": "bob"}).status_code == 404
    assert role_of(team, "bob") == "artist"
    root = signed_in(team["root"])
    assert b'id="member-add"' in root.get(settings_url(team)).content
    response = root.post(settings_url(team), {"action": "add", "username": "charlie", "role": "viewer"})
    assert response.status_code == 302
    assert role_of(team, "charlie") == "viewer"


def test_the_last_lead_cannot_be_removed_or_demoted(team):
    alice = signed_in(team["alice"])
    for data in (
        {"action": "role", "username": "alice", "role": "artist"},
        {"action": "remove", "username": "alice"},
    ):
        response = alice.post(settings_url(team), data)
        assert response.status_code == 409
        html = response.content.decode()
        assert "A project needs at least one lead." in html
        assert "Traceback" not in html
        alice_row = re.search(r'<tr id="member-alice".*?</tr>', html, re.S).group(0)
        assert 'class="has-error"' in alice_row and '<option value="lead" selected>' in alice_row
    # Nor through the API, nor by re-adding her with another role.
    assert signed_in(team["root"]).delete(member_url(team, "alice")).status_code == 409
    patch = alice.patch(
        member_url(team, "alice"), json.dumps({"role": "viewer"}), content_type="application/json"
    )
    assert patch.status_code == 409
    assert patch.json() == {"error": "A project needs at least one lead."}
    readd = alice.post(
        f"/api/v1/projects/{team['project'].slug}/members",
        json.dumps({"username": "alice", "role": "viewer"}),
        content_type="application/json",
    )
    assert readd.status_code == 409
    assert role_of(team, "alice") == "lead"
    assert not events(audit.MEMBER_ROLE) + events(audit.MEMBER_REMOVE)


def test_with_a_second_lead_the_first_may_step_down_or_leave(team):
    services.do_change_role(team["alice"], team["project"], "bob", "lead")
    alice = signed_in(team["alice"])
    response = alice.post(settings_url(team), {"action": "role", "username": "alice", "role": "artist"})
    assert response.status_code == 302
    assert role_of(team, "alice") == "artist"
    bob = signed_in(team["bob"])
    assert bob.post(settings_url(team), {"action": "remove", "username": "bob"}).status_code == 409
    services.do_change_role(team["bob"], team["project"], "vera", "lead")
    response = bob.post(settings_url(team), {"action": "remove", "username": "bob"})
    assert response.status_code == 302 and response["Location"] == "/"  # the page is no longer his
    assert role_of(team, "bob") is None


def test_a_deactivated_lead_does_not_count_as_the_remaining_lead(team):
    services.do_change_role(team["alice"], team["project"], "bob", "lead")
    team["bob"].is_active = False
    team["bob"].save()
    response = signed_in(team["alice"]).post(settings_url(team), {"action": "remove", "username": "alice"})
    assert response.status_code == 409
    # …but the deactivated one can be cleaned up while an active lead remains.
    assert (
        signed_in(team["alice"]).post(settings_url(team), {"action": "remove", "username": "bob"}).status_code
        == 302
    )


def test_page_errors_are_shown_and_keep_the_input(team):
    alice = signed_in(team["alice"])
    response = alice.post(settings_url(team), {"action": "add", "username": "nobody", "role": "viewer"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "No active user has that name." in html
    assert 'value="nobody"' in html
    assert '<option value="viewer" selected>' in html
    bad_role = alice.post(settings_url(team), {"action": "role", "username": "bob", "role": "boss"})
    assert bad_role.status_code == 400 and b"Choose one of: lead, artist, viewer." in bad_role.content
    bob_row = re.search(r'<tr id="member-bob".*?</tr>', bad_role.content.decode(), re.S).group(0)
    assert '<option value="artist" selected>' in bob_row and 'aria-invalid="true"' in bob_row
    gone = alice.post(settings_url(team), {"action": "remove", "username": "charlie"})
    assert gone.status_code == 400 and "“charlie” is not a member of this project." in gone.content.decode()
    assert alice.post(settings_url(team), {"action": "explode"}).status_code == 400


def test_the_settings_page_queries_do_not_grow_with_members(team, django_assert_max_num_queries):
    for i in range(25):
        factories.member(team["project"], factories.user(f"extra{i}"), Role.VIEWER)
    alice = signed_in(team["alice"])
    # 8, and for a lead 2 more for the "Delete this project" section (its jobs and its images).
    with django_assert_max_num_queries(10):
        assert alice.get(settings_url(team)).status_code == 200


def test_the_navigation_links_settings_and_account(team):
    html = signed_in(team["vera"]).get(f"/p/{team['project'].slug}/").content.decode()
    assert f'href="{settings_url(team)}"' in html
    assert 'href="/account/"' in html
    settings_page = signed_in(team["vera"]).get(settings_url(team)).content.decode()
    assert f'href="{settings_url(team)}" aria-current="page"' in settings_page


# --- members over the API ---


def test_api_patch_changes_a_role(team):
    alice = signed_in(team["alice"])
    response = alice.patch(
        member_url(team, "bob"), json.dumps({"role": "viewer"}), content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json() == {"username": "bob", "role": "viewer", "project": "poster"}
    assert role_of(team, "bob") == "viewer"
    [event] = events(audit.MEMBER_ROLE)
    assert event.details == {"from": "artist", "to": "viewer"}

    bad = alice.patch(member_url(team, "bob"), json.dumps({"role": "boss"}), content_type="application/json")
    assert bad.status_code == 400 and set(bad.json()["errors"]) == {"role"}
    assert (
        alice.patch(member_url(team, "bob"), "not json", content_type="application/json").status_code == 400
    )
    for username in ("charlie", "nobody"):
        response = alice.patch(
            member_url(team, username), json.dumps({"role": "viewer"}), content_type="application/json"
        )
        assert response.status_code == 404, username
        assert response.json()["error"]


def test_api_delete_removes_a_member(team):
    token = factories.token(team["alice"])
    response = Client().delete(member_url(team, "vera"), **bearer(token))
    assert response.status_code == 204 and response.content == b""
    assert role_of(team, "vera") is None
    [event] = events(audit.MEMBER_REMOVE)
    assert (event.actor, event.target, event.details) == (team["alice"], "user:vera", {"role": "viewer"})
    assert Client().delete(member_url(team, "charlie"), **bearer(token)).status_code == 404


@pytest.mark.parametrize(("who", "expected"), [("bob", 403), ("vera", 403), ("charlie", 404), (None, 401)])
def test_api_member_changes_need_a_lead(team, who, expected):
    client = signed_in(team[who]) if who else Client()
    body = json.dumps({"role": "lead"})
    assert (
        client.patch(member_url(team, "vera"), body, content_type="application/json").status_code == expected
    )
    assert client.delete(member_url(team, "vera")).status_code == expected
    assert role_of(team, "vera") == "viewer"
    assert client.get(member_url(team, "vera")).status_code in (405, 401)


def test_the_schema_describes_the_member_endpoints(team):
    schema = signed_in(team["bob"]).get("/api/v1/openapi.json").json()
    item = schema["paths"]["/projects/{slug}/members/{username}"]
    assert set(item) == {"patch", "delete"}
    assert "409" in item["patch"]["responses"] and "204" in item["delete"]["responses"]
