"""The privacy page says what this studio's running configuration does, not what a brochure would."""

from __future__ import annotations

import pytest

from gallery import encryption
from studio.models import Project
from tests import factories

pytestmark = pytest.mark.django_db


def page(client, user) -> str:
    client.force_login(user)
    response = client.get("/help/privacy/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_privacy_page_reads_the_running_configuration(client, team, settings, tmp_path):
    settings.STUDIO_C2PA_DIR = str(tmp_path / "credentials")
    Project.objects.filter(slug="poster").update(retention_days=14)
    factories.project(team["charlie"], name="Secret plans")
    text = page(client, team["vera"])
    assert settings.MEDIA_ROOT in text and "SQLite file" in text  # where files and rows live
    assert "Files are <strong>not encrypted</strong>" in text
    assert "Prompts are <strong>not included</strong> in manifests" in text
    assert "Studio Content Credentials root" in text  # the signing root, with its fingerprint
    assert "Poster: drafts and rejected images are deleted after <strong>14 days</strong>" in text
    assert "Secret plans" not in text  # only projects the reader is in
    assert "no connection outside its network" in text and "the database (SQLite file" in text

    settings.STUDIO_ENCRYPT_AT_REST = True
    settings.STUDIO_ENCRYPTION_KEY = key = encryption.generate_key()
    settings.STUDIO_C2PA_INCLUDE_PROMPT = True
    text = page(client, team["vera"])
    assert "Files are <strong>encrypted</strong>" in text and "key id" not in text
    assert "Prompts are <strong>included</strong>" in text
    key_id = encryption.key_id(encryption.parse_key(key)).hex()
    assert key_id in page(client, team["root"])  # admins see which master key is in use

    client.logout()
    assert client.get("/help/privacy/").status_code == 302
