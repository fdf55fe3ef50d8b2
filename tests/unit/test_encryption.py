"""Encryption at rest: with a key set, neither the media dir nor the S3 bucket ever holds an image, a
thumbnail, a mask, an upload or a prompt in the clear; what the studio serves is byte for byte what an
unencrypted store serves; a key rotation keeps everything readable; a wrong key refuses to start; and
encrypting an existing store in place survives a kill -9."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from PIL import Image

from gallery import encryption, keyops, storage
from gallery.models import Asset
from tests.integration.stack import ROOT
from tests.unit.conftest import CREDENTIALS
from tests.unit.test_credentials import inpaint_child
from tests.unit.test_exports import make_job_assets

pytestmark = pytest.mark.django_db

PROMPT = b"a red circle"
SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff")


@pytest.fixture(autouse=True)
def own_credentials(settings, tmp_path):
    settings.STUDIO_C2PA_DIR = str(tmp_path / "credentials")


def use_storage(settings, backend: str, key: str | None, location, previous: list[str] | None = None):
    """Point the default storage at ``location`` (a folder, or an S3 bucket), encrypted with ``key``."""
    settings.STUDIO_ENCRYPT_AT_REST = key is not None
    settings.STUDIO_ENCRYPTION_KEY = key or ""
    settings.STUDIO_ENCRYPTION_KEY_FILE = ""
    settings.STUDIO_ENCRYPTION_PREVIOUS_KEYS = previous or []
    settings.STUDIO_ENCRYPTION_PREVIOUS_KEYS_FILE = ""
    if backend == "filesystem":
        cls = "EncryptedFileSystemStorage" if key else None
        options: dict = {"location": str(location), "base_url": None}
        path = f"gallery.storage.{cls}" if cls else "django.core.files.storage.FileSystemStorage"
    else:
        endpoint, bucket = location
        options = {
            "bucket_name": bucket,
            "endpoint_url": endpoint,
            "access_key": "testing",
            "secret_key": "testing",
            "region_name": "us-east-1",
            "addressing_style": "path",
            "default_acl": "private",
            "file_overwrite": False,
        }
        path = "gallery.storage.EncryptedS3Storage" if key else "storages.backends.s3.S3Storage"
    settings.STORAGES = {**django_settings.STORAGES, "default": {"BACKEND": path, "OPTIONS": options}}


def raw_files(backend: str, location) -> dict[str, bytes]:
    """Every stored file's bytes as the disk or the bucket holds them."""
    if backend == "filesystem":
        return {
            str(p.relative_to(location)): p.read_bytes() for p in Path(location).rglob("*") if p.is_file()
        }
    import boto3

    endpoint, bucket = location
    s3 = boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def a_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (48, 32), (10, 20, 200)).save(out, format="PNG")
    return out.getvalue()


def fill_studio(client, team) -> list:
    """Images, thumbnails, an inpainted child with its mask, and an upload, as the studio makes them."""
    [parent] = make_job_assets(team["project"], team["bob"])
    child = inpaint_child(parent, team["bob"])
    client.force_login(team["bob"])
    response = client.post("/api/v1/projects/poster/uploads", {"image": ContentFile(a_png(), name="ref.png")})
    assert response.status_code == 201, response.content
    return [parent, child, Asset.objects.get(id=response.json()["id"])]


def served(client, team, assets) -> dict[str, bytes]:
    client.force_login(team["alice"])
    out = {}
    for asset in assets:
        for kind in ("image", "thumbnail", "mask"):
            response = client.get(f"/api/v1/assets/{asset.id}/{kind}")
            if response.status_code == 200:
                out[f"{asset.id}/{kind}"] = b"".join(response.streaming_content)
    out["export"] = b"".join(client.get("/api/v1/projects/poster/export?status=all").streaming_content)
    return out


@pytest.mark.parametrize("backend", ["filesystem", "s3"])
def test_with_a_key_no_stored_file_holds_an_image_or_a_prompt_in_the_clear(
    client, team, settings, tmp_path, backend, request
):
    if backend == "s3":
        import boto3

        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = f"studio-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS).create_bucket(Bucket=bucket)
        location = (endpoint, bucket)
    else:
        location = tmp_path / "media"
    use_storage(settings, backend, encryption.generate_key(), location)
    assets = fill_studio(client, team)
    files = raw_files(backend, location)
    assert len(files) >= 8  # 3 PNGs, 3 thumbnails, the job's mask and the child's copy of it
    for name, data in files.items():
        assert not data.startswith(SIGNATURES), name
        assert PROMPT not in data, name
        assert encryption.is_encrypted(data), name
    # Served in the clear to members: a real PNG, JPEG and mask.
    out = served(client, team, assets)
    assert out[f"{assets[0].id}/image"].startswith(b"\x89PNG")
    assert out[f"{assets[0].id}/thumbnail"].startswith(b"\xff\xd8\xff")
    assert Image.open(io.BytesIO(out[f"{assets[1].id}/mask"])).mode == "L"
    assert len(read_zip_bytes(out["export"]).namelist()) == 6


def read_zip_bytes(data: bytes):
    import zipfile

    return zipfile.ZipFile(io.BytesIO(data))


def test_everything_served_is_byte_identical_to_the_unencrypted_store(client, team, settings, tmp_path):
    settings.STUDIO_C2PA = False  # so the export's zip is the same bytes from both stores
    key = encryption.generate_key()
    use_storage(settings, "filesystem", key, tmp_path / "encrypted")
    assets = fill_studio(client, team)
    from_encrypted = served(client, team, assets)
    # The same files, decrypted into a plain store: what an unencrypted studio holds and serves.
    keyring = encryption.load_keyring(key)
    for name, data in raw_files("filesystem", tmp_path / "encrypted").items():
        target = tmp_path / "plain" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encryption.decrypt_bytes(data, keyring))
    use_storage(settings, "filesystem", None, tmp_path / "plain")
    from_plain = served(client, team, assets)
    assert from_encrypted.keys() == from_plain.keys() and len(from_plain) == 8
    for name in from_plain:
        assert from_encrypted[name] == from_plain[name], name


def test_reading_a_range_decrypts_only_what_it_needs(settings, tmp_path):
    use_storage(settings, "filesystem", encryption.generate_key(), tmp_path)
    data = os.urandom(5 * encryption.CHUNK_SIZE + 123)
    name = default_storage.save("big.bin", ContentFile(data))
    with storage.open_plaintext(name) as f:
        assert f.size == len(data) == default_storage.size(name)
        f.seek(3 * encryption.CHUNK_SIZE - 10)
        assert f.read(30) == data[3 * encryption.CHUNK_SIZE - 10 : 3 * encryption.CHUNK_SIZE + 20]
    raw = (tmp_path / name).read_bytes()
    keyring = storage.current_keyring()
    # Served in 4 KiB blocks, as FileResponse reads: never more than one chunk of ciphertext at a time.
    reads: list[int] = []

    class Counting(io.BytesIO):
        def read(self, n=-1):
            data = super().read(n)
            reads.append(len(data))
            return data

    reader = encryption.DecryptingReader(Counting(raw), len(raw), keyring)
    assert b"".join(iter(lambda: reader.read(4096), b"")) == data
    assert max(reads) <= encryption.CHUNK_SIZE + encryption.TAG_SIZE
    for cut in (
        raw[:-1],
        raw[: encryption.HEADER_SIZE + encryption.CHUNK_SIZE + 16],
    ):  # torn, or a chunk short
        with pytest.raises(encryption.EncryptionError):
            encryption.decrypt_bytes(cut, keyring)
    flipped = bytearray(raw)
    flipped[encryption.HEADER_SIZE + 100] ^= 1
    with pytest.raises(encryption.EncryptionError, match="changed or damaged"):
        encryption.decrypt_bytes(bytes(flipped), keyring)
    with pytest.raises(encryption.UnknownKey):
        encryption.decrypt_bytes(raw, encryption.load_keyring(encryption.generate_key()))


def test_an_encrypted_image_is_served_by_byte_range(client, team, settings, tmp_path):
    """A player, a resumed download or a viewer reading an image's header asks for a range: the studio
    answers 206 with just those bytes, decrypting only the chunks they lie in."""
    use_storage(settings, "filesystem", encryption.generate_key(), tmp_path)
    [image, *_] = fill_studio(client, team)
    client.force_login(team["alice"])
    whole = b"".join(client.get(f"/api/v1/assets/{image.id}/image").streaming_content)
    size = len(whole)
    for path in (f"/api/v1/assets/{image.id}/image", f"/assets/{image.id}/image.png"):
        part = client.get(path, HTTP_RANGE="bytes=8-40")
        assert part.status_code == 206, path
        assert part["Content-Range"] == f"bytes 8-40/{size}" and part["Content-Length"] == "33"
        assert b"".join(part.streaming_content) == whole[8:41]
    tail = client.get(f"/api/v1/assets/{image.id}/image", HTTP_RANGE="bytes=-16")
    assert b"".join(tail.streaming_content) == whole[-16:]
    rest = client.get(f"/api/v1/assets/{image.id}/image", HTTP_RANGE=f"bytes={size - 5}-")
    assert rest["Content-Range"] == f"bytes {size - 5}-{size - 1}/{size}"
    beyond = client.get(f"/api/v1/assets/{image.id}/image", HTTP_RANGE=f"bytes={size}-")
    assert beyond.status_code == 416 and beyond["Content-Range"] == f"bytes */{size}"
    # A header this does not serve (several ranges, other units) gets the whole file, as HTTP says.
    for ignored in ("bytes=0-1,5-9", "lines=1-2", "bytes=x-", "bytes=9-3"):
        answer = client.get(f"/api/v1/assets/{image.id}/image", HTTP_RANGE=ignored)
        assert answer.status_code == 200 and answer["Accept-Ranges"] == "bytes"
        assert b"".join(answer.streaming_content) == whole


@pytest.mark.parametrize("backend", ["filesystem", "s3"])
def test_rotation_rewraps_data_keys_and_keeps_everything_readable(
    client, team, settings, tmp_path, backend, request
):
    if backend == "s3":
        import boto3

        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = f"studio-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS).create_bucket(Bucket=bucket)
        location = (endpoint, bucket)
    else:
        location = tmp_path / "media"
    old, new = encryption.generate_key(), encryption.generate_key()
    use_storage(settings, backend, old, location)
    assets = fill_studio(client, team)
    before = served(client, team, assets)
    bodies = {n: d[encryption.HEADER_SIZE :] for n, d in raw_files(backend, location).items()}
    use_storage(settings, backend, new, location, previous=[old])
    out = io.StringIO()
    call_command("studio_rotate_key", stdout=out, stderr=io.StringIO())
    assert f"Re-wrapped {len(bodies)} files" in out.getvalue()
    after_files = raw_files(backend, location)
    new_id = encryption.key_id(encryption.parse_key(new))
    for name, data in after_files.items():
        assert encryption.Header.parse(data).kid == new_id, name
        assert data[encryption.HEADER_SIZE :] == bodies[name], name  # the image itself was not rewritten
    use_storage(settings, backend, new, location)  # the old key is gone
    after = served(client, team, assets)
    for name in before:
        if name != "export":  # the export is signed anew each time
            assert after[name] == before[name], name
    assert len(read_zip_bytes(after["export"]).namelist()) == 6
    call_command("studio_rotate_key", stdout=(again := io.StringIO()), stderr=io.StringIO())
    assert "Re-wrapped 0 files" in again.getvalue()


def test_embedded_rotation_makes_a_new_key_and_keeps_the_old_one_readable(client, team, settings, tmp_path):
    key_file, previous_file = tmp_path / "encryption.key", tmp_path / "encryption.previous-keys"
    encryption.write_key_file(key_file, encryption.generate_key())
    use_storage(settings, "filesystem", "", tmp_path / "media")
    settings.STUDIO_ENCRYPT_AT_REST = True
    settings.STUDIO_ENCRYPTION_KEY_FILE = str(key_file)
    settings.STUDIO_ENCRYPTION_PREVIOUS_KEYS_FILE = str(previous_file)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "BACKEND": "gallery.storage.EncryptedFileSystemStorage"},
    }
    assets = fill_studio(client, team)
    old = key_file.read_text().strip()
    call_command("studio_rotate_key", "--new-key", stdout=io.StringIO(), stderr=io.StringIO())
    assert key_file.read_text().strip() != old and previous_file.read_text().split() == [old]
    assert (
        oct(key_file.stat().st_mode & 0o777) == "0o600"
        and oct(previous_file.stat().st_mode & 0o777) == "0o600"
    )
    previous_file.unlink()  # every file is under the new key: the old one is no longer needed
    assert served(client, team, assets)[f"{assets[0].id}/image"].startswith(b"\x89PNG")


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def studio_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "DATABASE_URL", "DJANGO_"))}
    env.update(
        STUDIO_ENV="test",
        DJANGO_SETTINGS_MODULE="studio.settings",
        STUDIO_DATA_DIR=str(data_dir),
        STUDIO_MEDIA_DIR=str(data_dir / "media"),
    )
    env.update(extra)
    return env


def test_a_wrong_or_missing_key_refuses_to_start_with_a_clear_sentence(tmp_path):
    key = encryption.generate_key()
    first = manage(studio_env(tmp_path, STUDIO_ENCRYPTION_KEY=key), "check")
    assert first.returncode == 0, first.stderr  # the first start with a key marks the store
    wrong = manage(studio_env(tmp_path, STUDIO_ENCRYPTION_KEY=encryption.generate_key()), "check")
    assert wrong.returncode != 0
    assert "Refusing to start: The encryption key does not match this studio's files" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    missing = manage(studio_env(tmp_path), "check")
    assert missing.returncode != 0
    assert "The stored files are encrypted, but no encryption key is configured" in missing.stderr
    malformed = manage(studio_env(tmp_path, STUDIO_ENCRYPTION_KEY="not-a-key"), "check")
    assert malformed.returncode != 0 and "make one with `manage.py studio_keygen`" in malformed.stderr
    # Making a key works whatever the configuration says.
    made = manage(studio_env(tmp_path), "studio_keygen")
    assert made.returncode == 0 and len(encryption.parse_key(made.stdout)) == 32
    assert manage(studio_env(tmp_path, STUDIO_ENCRYPTION_KEY=key), "check").returncode == 0


# Run in a child process: encrypt the store, but die by SIGKILL half-way through writing the fourth file.
KILLED_RUN = """
import os, signal, django
django.setup()
from gallery import keyops
from django.core.management import call_command
done = []
real = keyops.FileSystemRaw.replace
def replace(self, name, chunks):
    if len(done) == 3:
        def torn():
            for i, chunk in enumerate(chunks):
                yield chunk
                if i == 1:
                    os.kill(os.getpid(), signal.SIGKILL)
        return real(self, name, torn())
    done.append(name)
    return real(self, name, chunks)
keyops.FileSystemRaw.replace = replace
call_command("studio_encrypt_store")
"""


def test_encrypting_a_store_in_place_resumes_after_kill_9(tmp_path):
    media = tmp_path / "media"
    originals = {}
    for i in range(8):
        path = media / "assets" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = a_png() + os.urandom(3 * encryption.CHUNK_SIZE)  # several chunks each
        path.write_bytes(data)
        originals[str(path.relative_to(media))] = data
    key = encryption.generate_key()
    env = studio_env(tmp_path, STUDIO_ENCRYPTION_KEY=key)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert killed.returncode == -9, killed.stderr
    keyring = encryption.load_keyring(key)
    states = {n: encryption.is_encrypted((media / n).read_bytes()) for n in originals}
    assert sum(states.values()) == 3  # three done, the fourth torn (its plaintext intact), four to go
    assert list(media.rglob("*" + keyops.TEMP_SUFFIX))  # the torn file's half-written ciphertext
    for name, data in originals.items():
        stored = (media / name).read_bytes()
        assert (encryption.decrypt_bytes(stored, keyring) if states[name] else stored) == data
    resumed = manage(env, "studio_encrypt_store")
    assert resumed.returncode == 0, resumed.stderr
    assert "Encrypted 5 files; 4 were encrypted already." in resumed.stdout  # 3 + the key check file
    assert "Encrypting" in resumed.stderr and "100%" in resumed.stderr  # the progress bar
    assert not list(media.rglob("*" + keyops.TEMP_SUFFIX))
    for name, data in originals.items():
        assert encryption.decrypt_bytes((media / name).read_bytes(), keyring) == data


def test_an_encrypted_store_never_hands_out_a_direct_url(settings, tmp_path):
    """A direct URL would serve ciphertext, or skip the permission check: only the studio's views serve."""
    use_storage(settings, "filesystem", encryption.generate_key(), tmp_path / "media")
    from django.core.files.storage import default_storage

    with pytest.raises(storage.NoDirectURL, match="serve them through the studio's views"):
        default_storage.url("assets/x.png")
