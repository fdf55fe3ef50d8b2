"""The studio's file storage, encrypted at rest when a master key is configured.

``EncryptedFileSystemStorage`` and ``EncryptedS3Storage`` are Django storages that encrypt every file on its
way in (``gallery.encryption``'s envelope format) and decrypt on the way out, so the disk, the S3 bucket and
its backups only ever hold ciphertext. Files written before encryption was switched on are read as they are
until ``manage.py studio_encrypt_store`` encrypts them in place.

Everything that hands a stored file to someone (the image views, exports, the worker's start images) reads
it through ``open_plaintext`` or ``plaintext_chunks``: nothing may serve a stored file's raw bytes (for
instance by X-Accel-Redirect) while ``encryption_enabled()``.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, default_storage
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

from . import encryption
from .encryption import CHUNK_SIZE, HEADER_SIZE, MAGIC, DecryptingReader, Keyring

logger = logging.getLogger(__name__)

# The small encrypted file whose key id tells, at start-up, whether the configured key is the store's.
KEY_CHECK_NAME = "_studio/encryption-check.bin"
KEY_CHECK_TEXT = b"studio encryption check\n"
SPOOL_BYTES = 8 * 1024 * 1024  # ciphertext held in memory while a file is saved; beyond it, a temp file


# --- the keyring --

_cache_lock = threading.Lock()
_cache: tuple[Any, Keyring] | None = None


def encryption_enabled() -> bool:
    return bool(settings.STUDIO_ENCRYPT_AT_REST)


def _read_optional(path: str) -> str:
    return Path(path).read_text() if path and Path(path).exists() else ""


def _stamp(path: str) -> tuple[str, int | None]:
    try:
        return path, os.stat(path).st_mtime_ns if path else None
    except FileNotFoundError:
        return path, None


def _key_signature() -> Any:
    """What changes when the configured keys do. Keys kept in files are read again when a file changes, so
    a rotation in the embedded mode reaches running processes without a restart."""
    return (
        _stamp(settings.STUDIO_ENCRYPTION_KEY_FILE),
        _stamp(settings.STUDIO_ENCRYPTION_PREVIOUS_KEYS_FILE),
        settings.STUDIO_ENCRYPTION_KEY,
        tuple(settings.STUDIO_ENCRYPTION_PREVIOUS_KEYS),
    )


def key_source_name() -> str:
    if settings.STUDIO_ENCRYPTION_KEY:
        return "STUDIO_ENCRYPTION_KEY"
    return str(settings.STUDIO_ENCRYPTION_KEY_FILE)


def current_keyring() -> Keyring:
    """The configured master keys; encryption.BadKey for a malformed or missing one."""
    global _cache
    signature = _key_signature()
    with _cache_lock:
        if _cache is not None and _cache[0] == signature:
            return _cache[1]
        current = settings.STUDIO_ENCRYPTION_KEY or _read_optional(settings.STUDIO_ENCRYPTION_KEY_FILE)
        previous = [
            *settings.STUDIO_ENCRYPTION_PREVIOUS_KEYS,
            *_read_optional(settings.STUDIO_ENCRYPTION_PREVIOUS_KEYS_FILE).split(),
        ]
        if not current.strip():
            raise encryption.BadKey(
                f"No encryption key: {key_source_name()} is empty. Set STUDIO_ENCRYPTION_KEY (or "
                "STUDIO_ENCRYPTION_KEY_FILE) to a key made with `manage.py studio_keygen`."
            )
        keyring = encryption.load_keyring(current, previous, source=key_source_name())
        _cache = (signature, keyring)
        return keyring


# --- the storages --


class PlaintextFile(File):
    """A stored file read as plaintext; ``size`` is the plaintext's."""

    def __init__(self, file: IO[bytes], name: str, size: int) -> None:
        super().__init__(file, name=name)
        self._plain_size = size

    @property
    def size(self) -> int:
        return self._plain_size


class NoDirectURL(Exception):
    """Asked for a direct URL of a file that is stored encrypted: only the studio's views can serve it."""


class EncryptedStorageMixin:
    """Encrypts on ``_save`` and decrypts on ``_open`` whatever backend it is mixed into. The stored bytes
    are not what a client gets, so its files are never handed to nginx as they are (gallery/media.py)."""

    transforms_content = True

    def _save(self, name: str, content: Any) -> str:
        keyring = current_keyring()
        spooled = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
        if hasattr(content, "seek") and getattr(content, "seekable", lambda: True)():
            content.seek(0)
        for piece in encryption.encrypt_chunks(content.chunks(CHUNK_SIZE), keyring):
            spooled.write(piece)
        spooled.seek(0)
        try:
            return super()._save(name, File(spooled, name=name))  # type: ignore[misc]
        finally:
            spooled.close()

    def _open(self, name: str, mode: str = "rb") -> File:
        if "w" in mode or "a" in mode or "+" in mode:
            raise ValueError("Encrypted storage files are opened for reading only; save new content instead.")
        raw: File = super()._open(name, mode)  # type: ignore[misc]
        head = raw.read(len(MAGIC))
        raw.seek(0)
        if not encryption.is_encrypted(head):
            return raw  # written before encryption was on, until studio_encrypt_store gets to it
        reader = DecryptingReader(raw, raw.size, current_keyring())
        return PlaintextFile(io.BufferedReader(reader, CHUNK_SIZE), name, reader.size)

    def _read_head(self, name: str) -> bytes:
        with super()._open(name, "rb") as f:  # type: ignore[misc]
            data: bytes = f.read(HEADER_SIZE)
        return data

    def size(self, name: str) -> int:
        raw_size: int = super().size(name)  # type: ignore[misc]
        head = self._read_head(name)
        if not encryption.is_encrypted(head):
            return raw_size
        return encryption.plaintext_size(raw_size, encryption.Header.parse(head))

    def url(self, name: str | None) -> str:
        raise NoDirectURL("Encrypted files have no URL: serve them through the studio's views.")


class EncryptedFileSystemStorage(EncryptedStorageMixin, FileSystemStorage):
    pass


class EncryptedS3Storage(EncryptedStorageMixin, S3Storage):
    def get_object_parameters(self, name: str) -> dict[str, Any]:
        # Ciphertext is no image: never labelled as one, whatever the name says.
        return {**super().get_object_parameters(name), "ContentType": "application/octet-stream"}

    def _read_head(self, name: str) -> bytes:
        obj = self.bucket.Object(self._normalize_name(clean_name(name)))
        data: bytes = obj.get(Range=f"bytes=0-{HEADER_SIZE - 1}")["Body"].read()
        return data


# --- reading stored files as plaintext --


def open_plaintext(name: str, storage: Storage | None = None) -> File:
    """Open a stored file for reading as plaintext (decrypted when it is encrypted). Seekable; its ``size``
    is the plaintext's; memory stays at about one chunk."""
    return (storage or default_storage).open(name, "rb")


class _Joined(io.RawIOBase):
    """Bytes already read, then the rest of an unseekable stream."""

    def __init__(self, head: bytes, rest: Any) -> None:
        super().__init__()
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def plaintext_chunks(
    name: str, chunk_size: int = CHUNK_SIZE, storage: Storage | None = None
) -> Iterator[bytes]:
    """A stored file's plaintext in chunks. On S3 this streams the GET body (django-storages' S3File would
    first download the whole object)."""
    storage = storage or default_storage
    bucket = getattr(storage, "bucket", None)
    if bucket is None or not isinstance(storage, S3Storage):
        with open_plaintext(name, storage) as f:
            yield from f.chunks(chunk_size)
        return
    response = bucket.Object(storage._normalize_name(clean_name(name))).get()
    body = response["Body"]
    try:
        head = body.read(len(MAGIC))
        stream: Any = _Joined(head, body)
        if encryption.is_encrypted(head):
            stream = DecryptingReader(stream, int(response["ContentLength"]), current_keyring())
        while data := stream.read(chunk_size):
            yield data
    finally:
        body.close()


# --- the start-up check --


def check_key_matches_store(storage: Storage | None = None) -> None:
    """ImproperlyConfigured, with a sentence saying what to do, when the configured key cannot read this
    store's files: a wrong key, a malformed one, or none while the store holds encrypted files. With a good
    key and no check file yet, writes one (so the next start can tell)."""
    storage = storage or default_storage
    try:
        exists = storage.exists(KEY_CHECK_NAME)
    except Exception:
        logger.warning("Could not reach the storage to check the encryption key; going on.", exc_info=True)
        return
    if not encryption_enabled():
        if exists:
            raise ImproperlyConfigured(
                "The stored files are encrypted, but no encryption key is configured: set "
                "STUDIO_ENCRYPTION_KEY (or STUDIO_ENCRYPTION_KEY_FILE) to the key they were encrypted with."
            )
        return
    try:
        keyring = current_keyring()
    except encryption.EncryptionError as exc:
        raise ImproperlyConfigured(str(exc)) from exc
    if not exists:
        storage.save(KEY_CHECK_NAME, ContentFile(KEY_CHECK_TEXT))
        return
    head = storage._read_head(KEY_CHECK_NAME) if isinstance(storage, EncryptedStorageMixin) else b""
    if encryption.is_encrypted(head):
        kid = encryption.Header.parse(head).kid
        if not keyring.knows(kid):
            raise ImproperlyConfigured(
                f"The encryption key does not match this studio's files: they were encrypted with master key "
                f"{kid.hex()}, and {key_source_name()} holds key {keyring.current_id.hex()}. Set "
                "STUDIO_ENCRYPTION_KEY (or STUDIO_ENCRYPTION_KEY_FILE) to the key they were made with; after "
                "a rotation, list the old key in STUDIO_ENCRYPTION_PREVIOUS_KEYS until studio_rotate_key has "
                "run."
            )
        try:
            with storage.open(KEY_CHECK_NAME, "rb") as f:
                f.read()
        except encryption.EncryptionError as exc:
            raise ImproperlyConfigured(
                f"The encryption key does not match this studio's files: {exc}"
            ) from exc


# Management commands that must work whatever the key (making a new one).
_UNCHECKED_COMMANDS = {"studio_keygen", "help", "makemigrations", "collectstatic"}


def check_at_startup() -> None:
    """Refuse to start (exit with the sentence, no traceback) when the key cannot read the store."""
    if len(sys.argv) > 1 and Path(sys.argv[0]).name == "manage.py" and sys.argv[1] in _UNCHECKED_COMMANDS:
        return
    try:
        check_key_matches_store()
    except ImproperlyConfigured as exc:
        sys.exit(f"Refusing to start: {exc}")
