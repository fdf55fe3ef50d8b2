"""Production refuses to start half-configured; the embedded mode keeps its own secret key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "DATABASE_URL", "REDIS_URL"))
    }
    clean.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


PRODUCTION = {
    "STUDIO_ENV": "production",
    "DATABASE_URL": "postgresql://studio@db/studio",
    "REDIS_URL": "redis://:lint-only@redis:6379/0",
    "STUDIO_ALLOWED_HOSTS": "studio.example",
}


@pytest.mark.parametrize(
    "missing", ["STUDIO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "STUDIO_ALLOWED_HOSTS"]
)
def test_production_refuses_to_start_without_its_settings(missing):
    env = {**PRODUCTION, "STUDIO_SECRET_KEY": "k" * 60}
    env.pop(missing)
    result = manage("check", **env)
    assert result.returncode != 0
    assert missing in result.stderr


def test_production_passes_the_deployment_checks():
    key = "".join(chr(33 + (i * 7) % 90) for i in range(60))
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION, STUDIO_SECRET_KEY=key)
    assert result.returncode == 0, result.stderr


def test_the_embedded_mode_generates_and_keeps_a_secret_key(tmp_path):
    for _ in range(2):
        assert manage("check", STUDIO_DATA_DIR=str(tmp_path)).returncode == 0
    key = (tmp_path / "secret_key").read_text()
    assert len(key) > 50
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"STUDIO_MFA_REQUIRED": "sometimes"}, "STUDIO_MFA_REQUIRED must be off, admins or everyone"),
        ({"STUDIO_OIDC_ISSUER": "https://idp.example"}, "STUDIO_OIDC_ISSUER needs STUDIO_OIDC_CLIENT_ID"),
        ({"STUDIO_SSO_ONLY": "true"}, "STUDIO_SSO_ONLY=true needs single sign-on configured"),
    ],
)
def test_sign_in_settings_that_cannot_work_are_refused(tmp_path, env, complaint):
    result = manage("check", STUDIO_DATA_DIR=str(tmp_path), **env)
    assert result.returncode != 0
    assert complaint in result.stderr


def test_single_sign_on_is_configured_from_the_environment(tmp_path):
    script = (
        "from django.conf import settings as s; app = s.SOCIALACCOUNT_PROVIDERS['openid_connect']['APPS'][0];"
        "print(app['client_id'], app['secret'], app['settings']['server_url'], s.STUDIO_SSO_ALLOWED_DOMAINS)"
    )
    secret = tmp_path / "oidc-secret"
    secret.write_text("from-a-file\n")
    result = manage(
        "shell",
        "-c",
        script,
        STUDIO_DATA_DIR=str(tmp_path),
        STUDIO_OIDC_ISSUER="https://idp.example/realms/studio/",
        STUDIO_OIDC_CLIENT_ID="studio",
        STUDIO_OIDC_CLIENT_SECRET_FILE=str(secret),
        STUDIO_SSO_ALLOWED_DOMAINS="@Studio.Example, partner.example",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "studio from-a-file https://idp.example/realms/studio ['studio.example', 'partner.example']"
    )


def test_the_embedded_mode_makes_its_encryption_key_and_signing_root_once(tmp_path):
    assert manage("check", STUDIO_DATA_DIR=str(tmp_path), STUDIO_ENCRYPT_AT_REST="true").returncode == 0
    key = (tmp_path / "encryption.key").read_text()
    assert oct((tmp_path / "encryption.key").stat().st_mode & 0o777) == "0o600"
    for name in ("root.key", "signing.key"):
        assert oct((tmp_path / "credentials" / name).stat().st_mode & 0o777) == "0o600"
    # Later runs keep the key (and keep encrypting) without being told again.
    result = manage("check", STUDIO_DATA_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "encryption.key").read_text() == key


def test_production_encryption_needs_a_key(tmp_path):
    env = {**PRODUCTION, "STUDIO_SECRET_KEY": "k" * 60, "STUDIO_ENCRYPT_AT_REST": "true"}
    result = manage("check", **env, STUDIO_DATA_DIR=str(tmp_path))
    assert result.returncode != 0 and "STUDIO_ENCRYPTION_KEY" in result.stderr
