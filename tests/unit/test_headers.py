"""Every page carries a Content-Security-Policy that allows only the studio's own scripts and styles (and
data:/blob: images and the page's websocket origin), pages and API answers are never stored by a browser or
proxy, and no template carries inline script or style."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


@pytest.mark.django_db
def test_pages_carry_a_policy_without_inline_code(client, team, settings):
    settings.ALLOWED_HOSTS = ["testserver", "studio.example"]
    client.force_login(team["alice"])
    csp = directives(client.get("/p/poster/"))
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert csp["img-src"] == ["'self'", "data:", "blob:"]
    assert csp["connect-src"] == ["'self'", "ws://testserver"]
    assert csp["object-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    assert not any("unsafe" in value for values in csp.values() for value in values)
    secure = client.get("/p/poster/", secure=True, headers={"host": "studio.example"})
    assert "wss://studio.example" in directives(secure)["connect-src"]


@pytest.mark.django_db
def test_private_answers_are_never_stored(client, team):
    client.force_login(team["alice"])
    for path in ("/", "/p/poster/", "/p/poster/gallery/", "/account/", "/api/v1/me", "/api/v1/projects"):
        cache_control = client.get(path)["Cache-Control"]
        assert "no-store" in cache_control and "private" in cache_control, path
    assert "no-store" in client.get("/accounts/login/")["Cache-Control"]


def test_no_template_or_script_needs_inline_code():
    inline_script = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
    handlers = re.compile(r"\son[a-z]+\s*=", re.I)
    for template in (ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        assert not inline_script.search(text), template
        assert "<style" not in text and "style=" not in text, template
        assert not handlers.search(text), template
    for script in (ROOT / "static").rglob("*.js"):
        text = script.read_text()
        assert "innerHTML" not in text or "template.innerHTML" in text, script
        assert 'style="' not in text and 'setAttribute("style"' not in text, script
