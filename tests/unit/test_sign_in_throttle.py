"""The sign-in throttle (per account and per address, through allauth's rate limits), SSO only for password
sign-ins, and the breached-password check.

Bob is an artist with the password "correct horse battery"; root is a site admin. Time is a fake clock, so
a 15-minute lockout passes in an instant.
"""

from __future__ import annotations

import io
import time
import types

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client

from studio import audit, services
from studio.breached import BreachedPasswordValidator, contains, sha1_hex
from studio.errors import InvalidInput
from studio.models import AuditEvent

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"
WRONG = "not the password 42"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    import allauth.core.internal.ratelimit as ratelimit

    import studio.sign_in as sign_in

    fake = Clock()
    fake_time = types.SimpleNamespace(time=fake.time, monotonic=time.monotonic, sleep=time.sleep)
    monkeypatch.setattr(ratelimit, "time", fake_time)
    monkeypatch.setattr(sign_in, "time", fake_time)
    cache.clear()
    yield fake
    cache.clear()


def attempt(username: str, password: str, ip: str = "10.0.0.7"):
    return Client().post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def lockouts() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=audit.SIGN_IN_LOCKOUT).order_by("id"))


def test_five_failures_lock_the_account_until_the_window_has_passed(team, clock):
    for _ in range(5):
        response = attempt("bob", WRONG)
        assert response.status_code == 200
        assert "The username and/or password you specified are not correct." in response.content.decode()
    assert not lockouts()

    # Locked: the right password is refused too, with when to come back.
    for password in (PASSWORD, WRONG, PASSWORD):
        response = attempt("bob", password)
        assert response.status_code == 200
        assert (
            "Too many failed sign-ins for this account. Try again in 15 minutes (after 08:15 UTC)."
            in response.content.decode()
        )
    # Another address does not help: the account itself is locked.
    assert (
        "Too many failed sign-ins for this account"
        in attempt("bob", PASSWORD, ip="10.9.9.9").content.decode()
    )
    # Other accounts are not affected.
    assert attempt("alice", PASSWORD).status_code == 302

    [event] = lockouts()
    assert (event.actor, event.target, event.ip) == (None, "user:bob", "10.0.0.7")
    assert event.details == {"scope": "account", "failures": 5, "until": "2027-01-15T08:15:00+00:00"}

    clock.advance(14 * 60)
    assert "Try again in 1 minute (after 08:15 UTC)" in attempt("bob", PASSWORD).content.decode()
    clock.advance(60 + 1)
    assert attempt("bob", PASSWORD).status_code == 302
    assert len(lockouts()) == 1

    # A new run of failures is a new lockout, audited once more.
    for _ in range(5):
        attempt("bob", WRONG)
    for _ in range(3):
        assert "Too many failed sign-ins" in attempt("bob", PASSWORD).content.decode()
    assert [e.target for e in lockouts()] == ["user:bob", "user:bob"]


def test_failures_from_one_address_lock_that_address(team, clock):
    names = ["alice", "bob", "vera", "charlie", "nobody"]
    for n in range(20):
        clock.advance(1)
        response = attempt(names[n % 5], f"guess {n}", ip="10.0.0.66")
        assert "Too many" not in response.content.decode(), n
    response = attempt("alice", PASSWORD, ip="10.0.0.66")
    assert "Too many failed sign-ins for your network address." in response.content.decode()
    attempt("vera", PASSWORD, ip="10.0.0.66")
    assert attempt("alice", PASSWORD, ip="10.0.0.67").status_code == 302
    # Four failures per account never locked one; the address lockout is one event.
    [event] = lockouts()
    assert (event.target, event.details["scope"], event.details["failures"]) == ("ip:10.0.0.66", "ip", 20)


def test_a_lockout_of_a_name_that_is_no_account_goes_to_the_log_not_the_audit_trail(team, clock, caplog):
    for _ in range(7):
        attempt("=cmd|'/c calc'!A1", WRONG)
    assert not AuditEvent.objects.exists()
    assert "sign-in lockout for unknown account" in caplog.text


def test_sso_only_refuses_passwords_except_for_break_glass_accounts(team, settings, clock):
    settings.STUDIO_OIDC_ISSUER = "http://idp.studio.test"
    settings.STUDIO_SSO_ONLY = True
    settings.STUDIO_SSO_BREAK_GLASS = ["root"]
    response = attempt("bob", PASSWORD)
    assert "Password sign-in is turned off here. Sign in with Single sign-on." in response.content.decode()
    # Django's own authenticate() is closed too (the admin site's form, Client.login, ...).
    assert not Client().login(username="bob", password=PASSWORD)
    assert attempt("root", PASSWORD).status_code == 302
    assert Client().login(username="root", password=PASSWORD)
    page = Client().get("/accounts/login/").content.decode()
    assert 'name="password"' not in page and "?break-glass" in page
    assert 'name="password"' in Client().get("/accounts/login/?break-glass").content.decode()


# --- breached passwords --


def test_a_password_from_the_shipped_breach_list_is_refused():
    validator = BreachedPasswordValidator()
    for leaked in ("letmein", "LetMeIn", "trustno1", "dragon"):
        with pytest.raises(ValidationError, match="leaked in data breaches"):
            validator.validate(leaked)
    validator.validate("a violet kettle sings at dawn")


def test_changing_to_a_breached_password_is_refused(team):
    with pytest.raises(InvalidInput) as refused:
        services.do_change_password(team["bob"], "baseball1")
    assert any("data breaches" in message for message in refused.value.errors["new_password1"])


def test_an_operator_list_in_the_pwned_passwords_format_is_searched(tmp_path, settings):
    sources = tmp_path / "passwords.txt"
    sources.write_text("hunter2\nopen sesame\n" + f"{sha1_hex('studio-rocks').decode()}:42\n")
    target = tmp_path / "list.txt"
    out = io.StringIO()
    call_command("build_breached_list", str(sources), "--output", str(target), stdout=out)
    assert "3 digests written" in out.getvalue()
    lines = target.read_bytes().splitlines()
    assert lines == sorted(lines) and len(lines) == 3
    for password in ("hunter2", "open sesame", "studio-rocks"):
        assert contains(target, sha1_hex(password))
    assert not contains(target, sha1_hex("hunter3"))
    # Lines with counts, as the Pwned Passwords downloads have them, are found the same way.
    counted = tmp_path / "counted.txt"
    counted.write_bytes(b"".join(line + b":17\n" for line in lines))
    settings.STUDIO_BREACHED_PASSWORDS_FILE = counted
    with pytest.raises(ValidationError):
        BreachedPasswordValidator().validate("open sesame")
    BreachedPasswordValidator().validate("open sesame!")
