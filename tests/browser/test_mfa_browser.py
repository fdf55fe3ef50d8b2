"""Two-factor authentication in the browser, on the studio that requires it for site admins (``sso_stack``):
an admin without MFA is sent to set it up; an authenticator app (codes from pyotp) is set up on the Account
page's path; then the admin signs in with a code, and with a recovery code. Passkeys: a security key is added
and used to sign in, with Chromium's virtual authenticator standing in for the hardware."""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from playwright.sync_api import expect

from studio import audit
from studio.models import AuditEvent
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"


def password_sign_in(browser, base_url: str, next_path: str = "/"):
    page = browser.new_context(base_url=base_url).new_page()
    # SSO only: root is the break-glass account, whose password form is one click away.
    page.goto(f"/accounts/login/?break-glass&next={next_path}")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    return page


def fresh_code(totp: pyotp.TOTP, used: set[str]) -> str:
    """The current code, waiting for the next period when this one signed in already (no replays)."""
    while (code := totp.now()) in used:
        time.sleep(0.5)
    used.add(code)
    return code


def test_an_admin_sets_up_an_authenticator_app_then_signs_in_with_a_code_and_a_recovery_code(
    browser, sso_stack
):
    factories.user("root", admin=True)
    page = password_sign_in(browser, sso_stack.base_url, "/manage/users/")

    # MFA is required for site admins: before anything else, its setup (after confirming the password).
    expect(page.locator(".messages")).to_contain_text("requires two-factor authentication for site admins")
    expect(page).to_have_url(
        re.compile(r"/accounts/reauthenticate/\?next=%2Faccounts%2F2fa%2Ftotp%2Factivate")
    )
    page.goto("/manage/users/")
    expect(page).to_have_url(
        re.compile(r"/accounts/reauthenticate/\?next=%2Faccounts%2F2fa%2Ftotp%2Factivate")
    )
    refused = page.request.get("/api/v1/me")
    assert refused.status == 403 and "two-factor" in refused.json()["error"]
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    expect(page).to_have_url(re.compile(r"/accounts/2fa/totp/activate/"))

    secret = page.locator("#authenticator_secret").input_value()
    totp, used = pyotp.TOTP(secret), set()
    page.fill("input[name=code]", "000000" if totp.now() != "000000" else "111111")
    page.get_by_role("button", name="Activate").click()
    expect(page.locator(".field-error")).to_contain_text("Incorrect code")
    page.fill("input[name=code]", totp.now())  # setting up does not use the code up
    page.get_by_role("button", name="Activate").click()
    expect(page).to_have_url(re.compile(r"/accounts/2fa/recovery-codes/"))
    codes = page.locator("#recovery_codes").input_value().split()
    assert len(codes) == 10

    page.goto("/manage/users/")
    expect(page).to_have_url(re.compile(r"/manage/users/$"))
    page.goto("/account/")
    expect(page.locator("#mfa-totp")).to_contain_text("on")
    expect(page.locator("#mfa-recovery")).to_contain_text("10 left")
    page.context.close()

    # Signing in now asks for a code after the password.
    page = password_sign_in(browser, sso_stack.base_url, "/manage/users/")
    expect(page).to_have_url(re.compile(r"/accounts/2fa/authenticate/"))
    page.fill("input[name=code]", fresh_code(totp, used))
    page.get_by_role("button", name="Sign In", exact=True).click()
    expect(page).to_have_url(re.compile(r"/manage/users/$"))
    page.context.close()

    # Without the phone: a recovery code, which then is used up.
    page = password_sign_in(browser, sso_stack.base_url, "/account/")
    expect(page).to_have_url(re.compile(r"/accounts/2fa/authenticate/"))
    page.fill("input[name=code]", codes[0])
    page.get_by_role("button", name="Sign In", exact=True).click()
    expect(page).to_have_url(re.compile(r"/account/$"))
    expect(page.locator("#mfa-recovery")).to_contain_text("9 left")
    page.context.close()

    signed_in = AuditEvent.objects.filter(action=audit.SIGN_IN).order_by("id")
    assert [e.details.get("mfa") for e in signed_in] == [None, "totp", "recovery_codes"]
    assert AuditEvent.objects.filter(action=audit.MFA_ADD, details__type="totp").count() == 1


def test_a_security_key_is_added_and_signs_in(browser, sso_stack):
    """Passkeys work with no network: Chromium's virtual authenticator, allauth's WebAuthn over fido2."""
    factories.user("root", admin=True)
    # WebAuthn needs a domain name (no IP address) as the relying party.
    base_url = sso_stack.base_url.replace("127.0.0.1", "localhost")
    page = password_sign_in(browser, base_url)
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "usb",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
            }
        },
    )
    page.goto("/accounts/2fa/webauthn/add/")
    page.fill("input[name=password]", PASSWORD)  # confirm the password first
    page.get_by_role("button", name="Confirm").click()
    page.fill("input[name=name]", "Desk key")
    page.click("#mfa_webauthn_add")
    expect(page).not_to_have_url(re.compile(r"/webauthn/add/"), timeout=15000)
    page.goto("/account/")
    expect(page.locator("#mfa-passkeys")).to_contain_text("1")
    # A passkey is a second factor: MFA is set up, so the admin pages open.
    page.goto("/manage/users/")
    expect(page).to_have_url(re.compile(r"/manage/users/$"))
    page.goto("/")

    page.locator(".logout-form button").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.goto("/accounts/login/?break-glass&next=/manage/users/")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(re.compile(r"/accounts/2fa/authenticate/"))
    page.click("#mfa_webauthn_authenticate")
    expect(page).to_have_url(re.compile(r"/manage/users/$"), timeout=15000)
    last = AuditEvent.objects.filter(action=audit.SIGN_IN).order_by("-id").first()
    assert last.details == {"method": "password", "mfa": "webauthn"}
