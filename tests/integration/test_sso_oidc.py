"""Single sign-on against a real OpenID Connect provider (panva's oidc-provider on loopback), through daphne.

The studio here is SSO only, with root as its break-glass account; it admits the studio.test domain and the
studio-admins and contractors groups, and studio-admins are site admins (``sso_stack`` in tests/conftest.py).
"""

from __future__ import annotations

import re

import pytest
import requests

from studio import audit
from studio.models import AuditEvent, User
from tests import factories
from tests.integration.oidc import csrf_token, sso_sign_in

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_a_first_sign_in_from_an_allowed_domain_creates_the_account(sso_stack):
    sso_stack.idp.set_account(
        "alice-at-idp",
        email="alice@studio.test",
        email_verified=True,
        preferred_username="alice",
        name="Alice Lead",
        groups=["artists"],
    )
    browser, back = sso_sign_in(sso_stack.base_url, "alice-at-idp")
    assert back.status_code == 200 and back.url == f"{sso_stack.base_url}/", back.text[:500]
    assert "alice" in back.text and "Sign out" in back.text

    user = User.objects.get(email="alice@studio.test")
    assert user.username == "alice" and not user.is_superuser and not user.has_usable_password()
    [signup] = events(audit.SSO_SIGN_UP)
    assert (signup.actor, signup.target) == (user, "user:alice")
    assert signup.details["email_domain"] == "studio.test"
    [signed_in] = events(audit.SIGN_IN)
    assert signed_in.actor == user and signed_in.details == {"method": "sso", "provider": "sso"}

    # The session works for the API too, and a second sign-in finds the same account.
    assert browser.get(f"{sso_stack.base_url}/api/v1/me", timeout=10).json()["username"] == "alice"
    _, again = sso_sign_in(sso_stack.base_url, "alice-at-idp")
    assert again.status_code == 200
    assert User.objects.filter(email="alice@studio.test").count() == 1
    assert len(events(audit.SSO_SIGN_UP)) == 1 and len(events(audit.SIGN_IN)) == 2


def test_a_verified_email_signs_in_the_account_that_already_has_it(sso_stack):
    bob = factories.user("bob")  # bob@studio.test, made by an admin before single sign-on
    sso_stack.idp.set_account(
        "b.smith", email="bob@studio.test", email_verified=True, preferred_username="robert"
    )
    browser, back = sso_sign_in(sso_stack.base_url, "b.smith")
    assert back.status_code == 200, back.text[:500]
    assert browser.get(f"{sso_stack.base_url}/api/v1/me", timeout=10).json()["username"] == "bob"
    assert list(User.objects.filter(email="bob@studio.test")) == [bob]
    assert not events(audit.SSO_SIGN_UP)
    assert events(audit.SIGN_IN)[0].actor == bob


def test_an_identity_from_a_disallowed_domain_is_refused(sso_stack):
    sso_stack.idp.set_account(
        "mallory", email="mallory@elsewhere.example", email_verified=True, groups=["visitors"]
    )
    # A claimed but unverified email of an allowed domain does not count either.
    sso_stack.idp.set_account("eve", email="eve@studio.test", email_verified=False, groups=[])
    for login, email in (("mallory", "mallory@elsewhere.example"), ("eve", "eve@studio.test")):
        browser, back = sso_sign_in(sso_stack.base_url, login)
        assert back.status_code == 403
        assert "This account may not use the studio" in back.text and email in back.text
        assert browser.get(f"{sso_stack.base_url}/api/v1/me", timeout=10).status_code == 401
    assert not User.objects.filter(email__in=["mallory@elsewhere.example", "eve@studio.test"]).exists()
    refused = events(audit.SSO_REFUSED)
    assert [e.target for e in refused] == ["sso:mallory@elsewhere.example", "sso:eve@studio.test"]
    assert refused[0].details["groups"] == ["visitors"] and refused[0].actor is None


def test_an_idp_group_maps_to_site_admin_and_back(sso_stack):
    sso_stack.idp.set_account(
        "gail", email="gail@contractor.example", email_verified=True, groups=["contractors", "studio-admins"]
    )
    browser, back = sso_sign_in(sso_stack.base_url, "gail")
    assert back.status_code == 200, back.text[:500]
    gail = User.objects.get(email="gail@contractor.example")
    assert gail.is_superuser
    # An SSO session counts as multi-factor (the IdP's own policy), so the admin is not sent to set MFA up.
    assert browser.get(f"{sso_stack.base_url}/manage/users/", timeout=10).status_code == 200
    [granted] = events(audit.USER_ADMIN_CHANGE)
    assert granted.details == {"from": False, "to": True, "via": "sso", "groups": ["studio-admins"]}

    # Out of the admin group at the IdP: no longer an admin at the next sign-in (a contractor still).
    sso_stack.idp.set_account(
        "gail", email="gail@contractor.example", email_verified=True, groups=["contractors"]
    )
    browser, back = sso_sign_in(sso_stack.base_url, "gail")
    assert back.status_code == 200
    gail.refresh_from_db()
    assert not gail.is_superuser
    assert browser.get(f"{sso_stack.base_url}/manage/users/", timeout=10).status_code == 404
    assert [e.details["to"] for e in events(audit.USER_ADMIN_CHANGE)] == [True, False]


def password_sign_in(base_url: str, username: str, password: str, path: str = "/accounts/login/"):
    browser = requests.Session()
    page = browser.get(base_url + path, timeout=10)
    response = browser.post(
        f"{base_url}/accounts/login/",
        data={"csrfmiddlewaretoken": csrf_token(page.text), "username": username, "password": password},
        timeout=10,
    )
    return page, response


def test_sso_only_turns_passwords_off_except_for_break_glass_accounts(sso_stack):
    factories.user("bob")
    factories.user("root", admin=True)
    page, response = password_sign_in(sso_stack.base_url, "bob", "correct horse battery")
    # The page offers single sign-on and hides the password form; a password post is refused anyway.
    assert "Sign in with Studio ID" in page.text and 'name="password"' not in page.text
    assert response.status_code == 200 and response.url.endswith("/accounts/login/")
    assert "Password sign-in is turned off here. Sign in with Studio ID." in response.text
    assert not events(audit.SIGN_IN)

    page, response = password_sign_in(
        sso_stack.base_url, "root", "correct horse battery", "/accounts/login/?break-glass"
    )
    assert 'name="password"' in page.text
    # Signed in; MFA is required for admins here, so root is sent to set it up first.
    assert re.search(r"/accounts/(2fa/totp/activate|reauthenticate)/", response.url), response.url
    [signed_in] = events(audit.SIGN_IN)
    assert signed_in.actor.username == "root" and signed_in.details == {"method": "password"}
