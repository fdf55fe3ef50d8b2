"""A real OpenID Connect provider for the single sign-on tests: panva's oidc-provider (tests/oidc/) run by
Node.js on loopback, and a small HTTP client that signs in through it as a person's browser would."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from html import unescape
from pathlib import Path
from typing import Any

import requests

from tests.integration.stack import ROOT, _reachable, free_port, wait_until

PROVIDER_DIR = ROOT / "tests" / "oidc"
CLIENT_ID = "studio"
CLIENT_SECRET = "a-test-only-client-secret-of-some-length"


class IdentityProvider:
    def __init__(self, work_dir: Path, studio_url: str) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.config_path = work_dir / "oidc-provider.json"
        self.log_path = work_dir / "oidc-provider.log"
        self.studio_url = studio_url
        self.accounts: dict[str, dict[str, Any]] = {}
        self.proc: subprocess.Popen | None = None

    def set_account(self, login: str, **claims: Any) -> None:
        """Add or change an account; the provider reads its accounts afresh at each sign-in."""
        self.accounts[login] = claims
        self._write()

    def _write(self) -> None:
        config = {
            "issuer": self.issuer,
            "clients": [
                {
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uris": [f"{self.studio_url}/accounts/oidc/sso/login/callback/"],
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                    "token_endpoint_auth_method": "client_secret_basic",
                }
            ],
            "accounts": self.accounts,
        }
        self.config_path.write_text(json.dumps(config))

    def start(self) -> None:
        node = shutil.which("node")
        if node is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(
                "the OpenID provider needs Node.js and `npm ci` in tests/oidc (make install-test)"
            )
        self._write()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [node, str(PROVIDER_DIR / "provider.mjs"), str(self.config_path)],
            cwd=PROVIDER_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: _reachable("127.0.0.1", self.port), 30, what="the OpenID provider to listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            import os

            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)

    def env(self) -> dict[str, str]:
        return {
            "STUDIO_OIDC_ISSUER": self.issuer,
            "STUDIO_OIDC_CLIENT_ID": CLIENT_ID,
            "STUDIO_OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "STUDIO_OIDC_NAME": "Studio ID",
        }


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def sso_sign_in(studio_url: str, login: str) -> tuple[requests.Session, requests.Response]:
    """Press "Sign in with …" on the studio's sign-in page, sign in at the provider as ``login``, and
    follow the redirects back. Returns the browser-like session and the last response."""
    browser = requests.Session()
    page = browser.get(f"{studio_url}/accounts/login/", timeout=10)
    button = re.search(r'<form method="post" action="([^"]+)" class="stack sso-form">', page.text)
    assert button, "no single sign-on button on the sign-in page"
    at_provider = browser.post(
        studio_url + unescape(button.group(1)),
        data={"csrfmiddlewaretoken": csrf_token(page.text), "process": "login"},
        timeout=10,
    )
    form = re.search(r'<form autocomplete="off" action="([^"]+)" method="post">', at_provider.text)
    assert form, f"no sign-in form at the provider: {at_provider.status_code} {at_provider.text[:300]}"
    action = unescape(form.group(1))
    if action.startswith("/"):
        action = at_provider.url.split("/interaction/")[0] + action
    back = browser.post(action, data={"prompt": "login", "login": login, "password": "any"}, timeout=20)
    return browser, back
