"""The audit trail records the address a request really came from: X-Forwarded-For counts only when the
request reached the studio through one of its own proxies (STUDIO_TRUSTED_PROXIES)."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from studio.audit import client_ip
from studio.models import AuditEvent


def request(remote: str, forwarded: str | None = None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def test_forwarded_for_is_ignored_from_anyone_but_a_trusted_proxy(settings):
    settings.STUDIO_TRUSTED_PROXIES = ["10.0.0.5"]
    assert client_ip(request("203.0.113.9", "1.2.3.4")) == "203.0.113.9"
    assert client_ip(request("203.0.113.9")) == "203.0.113.9"


def test_behind_trusted_proxies_the_first_untrusted_hop_counts(settings):
    settings.STUDIO_TRUSTED_PROXIES = ["10.0.0.0/24", "192.168.7.1"]
    # A client may send its own X-Forwarded-For: only what the studio's proxies appended is believed.
    assert client_ip(request("10.0.0.5", "6.6.6.6, 198.51.100.7")) == "198.51.100.7"
    assert client_ip(request("10.0.0.5", "6.6.6.6, 198.51.100.7, 192.168.7.1")) == "198.51.100.7"
    # Nothing forwarded, or only proxies: the proxy's own address.
    assert client_ip(request("10.0.0.5")) == "10.0.0.5"
    assert client_ip(request("10.0.0.5", "10.0.0.9")) == "10.0.0.9"


def test_a_garbled_forwarded_for_never_reaches_the_audit_trail(settings):
    settings.STUDIO_TRUSTED_PROXIES = ["10.0.0.5"]
    assert client_ip(request("10.0.0.5", "not-an-address")) == "10.0.0.5"
    assert client_ip(request("10.0.0.5", "[2001:db8::1]:443")) == "10.0.0.5"
    assert client_ip(request("10.0.0.5", " 2001:db8::1 ")) == "2001:db8::1"


@pytest.mark.django_db
def test_a_forged_header_does_not_change_the_recorded_sign_in_address(client, settings):
    from tests import factories

    settings.STUDIO_TRUSTED_PROXIES = []
    factories.user("alice")
    client.post(
        "/accounts/login/",
        {"username": "alice", "password": "correct horse battery"},
        HTTP_X_FORWARDED_FOR="1.2.3.4",
        REMOTE_ADDR="203.0.113.9",
    )
    assert AuditEvent.objects.get(action="auth.sign_in").ip == "203.0.113.9"


def test_a_trusted_proxy_that_is_not_an_address_stops_the_studio_from_starting():
    from tests.unit.test_settings import manage

    result = manage("check", STUDIO_ENV="test", STUDIO_TRUSTED_PROXIES="10.0.0.1,proxy.internal")
    assert result.returncode != 0
    assert "'proxy.internal' is not an IP address or network" in result.stderr
