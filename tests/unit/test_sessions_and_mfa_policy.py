"""How long a browser session lives (idle timeout, absolute lifetime), ending a user's other sessions, and the
site's MFA policy: who is sent to set MFA up, and that their last factor stays.

Alice leads Poster, Bob is its artist; root is a site admin.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from allauth.mfa.models import Authenticator
from channels.testing import WebsocketCommunicator
from django.test import Client

from studio import audit, mfa_policy, services
from studio.models import AuditEvent, UserSession
from studio.user_sessions import SEEN, STARTED
from tests import factories

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def age_session(client: Client, *, started: float, seen: float) -> None:
    session = client.session
    session[STARTED], session[SEEN] = time.time() - started, time.time() - seen
    session.save()


# --- session lifetimes --


def test_a_session_idle_too_long_is_signed_out(team, settings):
    settings.STUDIO_SESSION_IDLE_SECONDS = 3600
    alice = signed_in(team["alice"])
    assert alice.get("/account/").status_code == 200
    age_session(alice, started=3700, seen=3500)
    assert alice.get("/account/").status_code == 200  # used within the hour: goes on
    age_session(alice, started=7300, seen=3601)
    response = alice.get("/account/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not UserSession.objects.filter(user=team["alice"]).exists()
    page = alice.get(response["Location"]).content.decode()
    assert "You were signed out after a period of inactivity." in page


def test_a_session_ends_at_its_absolute_lifetime_however_busy(team, settings):
    settings.STUDIO_SESSION_MAX_SECONDS = 12 * 3600
    alice = signed_in(team["alice"])
    age_session(alice, started=12 * 3600 + 1, seen=1)
    response = alice.get("/api/v1/me")
    assert response.status_code == 401
    assert alice.get("/account/").status_code == 302


def test_the_last_seen_time_is_written_at_most_once_a_minute(team):
    alice = signed_in(team["alice"])
    age_session(alice, started=30, seen=30)
    before = alice.session[SEEN]
    alice.get("/account/")
    assert alice.session[SEEN] == before
    age_session(alice, started=90, seen=61)
    alice.get("/account/")
    assert alice.session[SEEN] > time.time() - 5


@pytest.mark.django_db(transaction=True)
def test_a_websocket_of_an_expired_session_is_refused(team, settings):
    from studio.asgi import application

    settings.STUDIO_SESSION_IDLE_SECONDS = 3600
    alice = signed_in(team["alice"])
    cookie = f"{settings.SESSION_COOKIE_NAME}={alice.cookies[settings.SESSION_COOKIE_NAME].value}"
    headers = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1"), (b"cookie", cookie.encode())]

    async def attempt() -> bool:
        ws = WebsocketCommunicator(application, "/ws/projects/poster/", headers=headers)
        connected, _ = await ws.connect()
        if connected:
            await ws.disconnect()
        return connected

    age_session(alice, started=60, seen=60)
    assert asyncio.run(attempt())
    age_session(alice, started=7200, seen=3601)
    assert not asyncio.run(attempt())


def test_end_sessions_keeps_only_the_named_session(team):
    here, laptop, phone = signed_in(team["bob"]), signed_in(team["bob"]), signed_in(team["bob"])
    assert services.end_sessions(team["bob"], keep=here.session.session_key) == 2
    assert here.get("/account/").status_code == 200
    assert laptop.get("/account/").status_code == 302 and phone.get("/account/").status_code == 302
    assert list(UserSession.objects.filter(user=team["bob"]).values_list("session_key", flat=True)) == [
        here.session.session_key
    ]


# --- the MFA policy --


def give_totp(user) -> Authenticator:
    return Authenticator.objects.create(user=user, type=Authenticator.Type.TOTP, data={"secret": "x"})


def test_admins_without_mfa_are_sent_to_set_it_up_first(team, settings):
    settings.STUDIO_MFA_REQUIRED = "admins"
    root = signed_in(team["root"])
    for url in ("/", "/manage/users/", "/account/", "/p/poster/"):
        response = root.get(url)
        assert response.status_code == 302 and response["Location"] == "/accounts/2fa/totp/activate/", url
    refused = root.get("/api/v1/me")
    assert refused.status_code == 403 and "requires two-factor authentication" in refused.json()["error"]
    assert root.get("/accounts/2fa/totp/activate/").status_code == 302  # reauthenticate, then set up
    assert root.post("/accounts/logout/").status_code == 302
    # Others are not covered; a token is no browser session (its owner made it after setting MFA up).
    assert signed_in(team["bob"]).get("/").status_code == 200
    token = factories.token(team["root"])
    assert Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200

    give_totp(team["root"])
    assert signed_in(team["root"]).get("/manage/users/").status_code == 200


def test_everyone_can_be_required_and_an_sso_session_counts_as_multi_factor(team, settings):
    settings.STUDIO_MFA_REQUIRED = "everyone"
    bob = signed_in(team["bob"])
    assert bob.get("/p/poster/")["Location"] == "/accounts/2fa/totp/activate/"
    session = bob.session
    session["account_authentication_methods"] = [{"method": "socialaccount", "provider": "sso", "at": 1}]
    session["account_authentication_methods_user"] = str(team["bob"].pk)
    session.save()
    assert bob.get("/p/poster/").status_code == 200
    settings.STUDIO_MFA_TRUST_SSO = False
    assert bob.get("/p/poster/").status_code == 302


def test_the_last_second_factor_of_a_covered_user_cannot_be_removed(team, settings):
    settings.STUDIO_MFA_REQUIRED = "admins"
    adapter = mfa_policy.MfaAdapter()
    totp = give_totp(team["root"])
    assert not adapter.can_delete_authenticator(totp)
    passkey = Authenticator.objects.create(user=team["root"], type=Authenticator.Type.WEBAUTHN, data={})
    assert adapter.can_delete_authenticator(totp) and adapter.can_delete_authenticator(passkey)
    assert adapter.can_delete_authenticator(give_totp(team["bob"]))  # Bob is not covered


def test_mfa_secrets_are_stored_encrypted_and_survive_a_key_rotation(settings):
    adapter = mfa_policy.MfaAdapter()
    stored = adapter.encrypt("JBSWY3DPEHPK3PXP")
    assert "JBSWY3DPEHPK3PXP" not in stored
    assert adapter.decrypt(stored) == "JBSWY3DPEHPK3PXP"
    assert adapter.decrypt("PLAINSECRET") == "PLAINSECRET"  # stored before encryption
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "y" * 40
    assert adapter.decrypt(stored) == "JBSWY3DPEHPK3PXP"
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(ValueError, match="SECRET_KEY_FALLBACKS"):
        adapter.decrypt(stored)


def test_a_site_admin_resets_the_mfa_of_someone_who_lost_their_phone(team):
    give_totp(team["bob"])
    Authenticator.objects.create(user=team["bob"], type=Authenticator.Type.RECOVERY_CODES, data={})
    root = signed_in(team["root"])
    users = root.get("/manage/users/").content.decode()
    assert (
        'href="/manage/users/bob/mfa-reset/"' in users
        and 'href="/manage/users/alice/mfa-reset/"' not in users
    )
    assert "recovery_codes, totp" in root.get("/manage/users/bob/mfa-reset/").content.decode()
    assert signed_in(team["alice"]).post("/manage/users/bob/mfa-reset/").status_code == 404
    assert Authenticator.objects.filter(user=team["bob"]).count() == 2

    response = root.post("/manage/users/bob/mfa-reset/", follow=True)
    assert "Two-factor authentication of “bob” was reset." in response.content.decode()
    assert not Authenticator.objects.filter(user=team["bob"]).exists()
    [event] = AuditEvent.objects.filter(action=audit.MFA_ADMIN_RESET)
    assert (event.actor, event.target, event.details) == (
        team["root"],
        "user:bob",
        {"removed": ["recovery_codes", "totp"]},
    )
