"""Backup and restore on PostgreSQL, the studio running (daphne and a worker busy with a job) while the
backup is taken; the archive restored into an empty installation serves every image with the same bytes,
provenance and reviews, and its people sign in."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import pytest
import requests
from PIL import Image

from gallery import services as gallery_services
from gallery.models import Asset
from generation.models import Job
from tests import factories
from tests.integration.stack import ROOT, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"


def manage(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=check
    )


def generate(stack, token: str, slug: str, **params) -> dict:
    status, job = stack.api(
        "POST", f"/api/v1/projects/{slug}/jobs", token, {"width": 64, "height": 64, **params}
    )
    assert status == 201, job
    return job


def finished(stack, token: str, job_id: str) -> dict:
    return wait_until(
        lambda: (
            (j := stack.api("GET", f"/api/v1/jobs/{job_id}", token)[1])["status"] in ("succeeded", "failed")
            and j
        ),
        90,
        interval=0.2,
        what="the job to finish",
    )


@pytest.fixture
def empty_installation(stack, tmp_path):
    """A new database on the same server and empty media and models folders."""
    parsed = urlparse(stack.database_url)
    name = parsed.path.lstrip("/") + "_restored"
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {
        **stack.env(),
        "DATABASE_URL": parsed._replace(path=f"/{name}").geturl(),
        "STUDIO_MEDIA_DIR": str(tmp_path / "restored-media"),
        "STUDIO_MODELS_DIR": str(tmp_path / "restored-models"),
        "STUDIO_DATA_DIR": str(tmp_path / "restored-var"),
    }
    yield env
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_backup_taken_while_the_studio_works_restores_into_an_empty_installation(
    stack, empty_installation, tmp_path
):
    alice, bob = factories.user("alice"), factories.user("bob")
    project = factories.project(alice, "Key art")
    factories.member(project, bob, "artist")
    token = factories.token(bob)
    made = [finished(stack, token, generate(stack, token, "key-art", prompt=p, seed=i)["id"]) for i, p in
            enumerate(["a red circle on a blue background", "a green star"])]  # fmt: skip
    assert [j["status"] for j in made] == ["succeeded", "succeeded"]
    first = Asset.objects.get(id=made[0]["assets"][0]["id"])
    gallery_services.do_submit(bob, first)
    gallery_services.do_review(alice, Asset.objects.get(id=first.id), "approve", "Use it for the poster.")
    gallery_services.do_comment(alice, first, "Lovely colours.")

    # While a long job runs, the backup is taken.
    # (large and long enough to outlast the backup on a loaded machine; canceled once the backup is written)
    busy = generate(stack, token, "key-art", prompt="a yellow ring", steps=150, seed=9, width=256, height=256)
    wait_until(lambda: Job.objects.filter(id=busy["id"], status="running").exists(), 60, what="a running job")
    archive = tmp_path / "backups" / "studio.tar"
    done = manage(stack.env(), "backup", str(archive))
    assert "Backup written to" in done.stdout, done.stderr
    assert "media" in done.stderr, "progress bars"
    assert Job.objects.get(id=busy["id"]).status == "running", "the studio kept working meanwhile"
    stack.api("POST", f"/api/v1/jobs/{busy['id']}/cancel", token)
    wait_until(
        lambda: stack.api("GET", f"/api/v1/jobs/{busy['id']}", token)[1]["status"] == "canceled",
        30,
        interval=0.2,
        what="the long job to be canceled",
    )

    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        names = set(tar.getnames())
    assert manifest["database"] == {"vendor": "postgresql", "member": "database/postgresql.dump"}
    assert manifest["media"]["missing"] == []
    for asset in Asset.objects.filter(id__in=[a["id"] for j in made for a in j["assets"]]):
        assert f"media/{asset.file.name}" in names and f"media/{asset.thumbnail.name}" in names
        with asset.file.open("rb") as f:
            assert (
                manifest["files"][f"media/{asset.file.name}"]["sha256"]
                == hashlib.sha256(f.read()).hexdigest()
            )
    assert "models/demo/studio.json" in names
    assert not any(n.endswith(".safetensors") for n in names), "no weights unless asked"

    # A damaged copy is refused before anything is written.
    damaged = tmp_path / "damaged.tar"
    raw = bytearray(archive.read_bytes())
    offset = raw.index(b"IHDR")  # inside the first PNG
    raw[offset + 10] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    refused = manage(empty_installation, "restore", "--no-progress", str(damaged), check=False)
    assert refused.returncode != 0 and "does not match its sha256" in refused.stderr

    manage(empty_installation, "migrate", "--no-input", "-v", "0")  # an installation that has started once
    restored = manage(empty_installation, "restore", "--no-progress", str(archive), check=False)
    assert restored.returncode == 0, restored.stderr
    assert "Restored the backup" in restored.stdout
    assert (Path(empty_installation["STUDIO_MODELS_DIR"]) / "demo" / "studio.json").exists()
    again = manage(empty_installation, "restore", "--no-progress", str(archive), check=False)
    assert again.returncode != 0 and "restore into an empty one" in again.stderr

    port = free_port()
    web = stack.spawn_web(
        "daphne-restored", port, **{k: empty_installation[k] for k in ("DATABASE_URL", "STUDIO_MEDIA_DIR")}
    )
    try:
        base = f"http://127.0.0.1:{port}"
        session = requests.Session()
        login = session.get(base + "/accounts/login/", timeout=10)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        signed_in = session.post(
            base + "/accounts/login/",
            data={"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": csrf},
            allow_redirects=False,
            timeout=10,
        )
        assert signed_in.status_code == 302, "sign-in works on the restored installation"
        listing = session.get(base + "/api/v1/projects/key-art/assets", timeout=10).json()["results"]
        original = {str(a.id): a for a in Asset.objects.filter(job_id__in=[j["id"] for j in made])}
        assert {a["id"] for a in listing} == set(original), (
            "the images made before the backup, and only those"
        )
        for item in listing:
            before = original[item["id"]]
            assert (item["prompt"], item["seed"], item["params"], item["model_sha256"]) == (
                before.prompt,
                before.seed,
                before.params,
                before.model_sha256,
            )
            png = session.get(base + item["image_url"], timeout=10)
            with before.file.open("rb") as f:
                assert hashlib.sha256(png.content).hexdigest() == hashlib.sha256(f.read()).hexdigest()
            assert "Seed: " in Image.open(io.BytesIO(png.content)).text["parameters"]
        reviews = session.get(f"{base}/api/v1/assets/{first.id}/reviews", timeout=10).json()
        assert [(r["decision"], r["comment"], r["by"]) for r in reviews][-1] == (
            "approve",
            "Use it for the poster.",
            "alice",
        )
        comments = session.get(f"{base}/api/v1/assets/{first.id}/comments", timeout=10).json()
        assert [c["text"] for c in comments] == ["Lovely colours."]
        assert session.get(f"{base}/api/v1/assets/{first.id}", timeout=10).json()["status"] == "approved"
    finally:
        web.terminate()
        web.wait(10)


def test_the_embedded_mode_backs_up_its_sqlite_database_online_and_restores_it(tmp_path):
    import os

    def embedded(data_dir: Path) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "DATABASE_URL", "REDIS_URL"))
        }
        return {
            **env,
            "STUDIO_ENV": "embedded",
            "STUDIO_DATA_DIR": str(data_dir),
            "DJANGO_SETTINGS_MODULE": "studio.settings",
        }

    source, target = embedded(tmp_path / "a"), embedded(tmp_path / "b")
    manage(source, "migrate", "--no-input", "-v", "0")
    manage(
        {**source, "DJANGO_SUPERUSER_PASSWORD": "a long operator password"},
        "createsuperuser", "--no-input", "--username", "ops", "--email", "ops@studio.test",
    )  # fmt: skip
    (tmp_path / "a" / "media" / "assets").mkdir(parents=True)
    (tmp_path / "a" / "media" / "assets" / "x.png").write_bytes(b"\x89PNG fake bytes")
    (tmp_path / "backups").mkdir()
    manage(source, "backup", "--no-progress", str(tmp_path / "backups"))
    [archive] = (tmp_path / "backups").glob("studio-backup-*.tar")
    with tarfile.open(archive) as tar:
        assert "database/studio.sqlite3" in tar.getnames()
    manage(target, "migrate", "--no-input", "-v", "0")
    manage(target, "restore", "--no-progress", str(archive))
    check = (
        "from studio.models import User; "
        "print(User.objects.get(username='ops').check_password('a long operator password'))"
    )
    assert manage(target, "shell", "-c", check).stdout.strip().splitlines()[-1] == "True"
    assert (tmp_path / "b" / "media" / "assets" / "x.png").read_bytes() == b"\x89PNG fake bytes"
