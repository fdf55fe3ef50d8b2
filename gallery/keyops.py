"""Operations on the whole store's ciphertext: encrypt an existing store in place, re-wrap data keys.

Both walk every file of the default storage's backend directly (below Django's storage API, which only
ever shows plaintext) and are safe to stop at any moment, kill -9 included, and to run again:

* encrypting writes each file's ciphertext beside it and atomically renames it over the plaintext (on S3,
  one PUT replaces the object whole), so a file is always either all plaintext or all ciphertext, and a run
  skips the files that are already encrypted;
* re-wrapping rewrites only the 48 header bytes that name the master key and hold the wrapped data key
  (one write on a filesystem; on S3, where objects cannot be edited, the object is copied with its new
  header — the image's ciphertext is never decrypted or re-encrypted), and skips files already under the
  current key.

The studio can keep running meanwhile: its storage reads plaintext and ciphertext alike.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.files.storage import FileSystemStorage, Storage
from storages.backends.s3 import S3Storage

from . import encryption
from .encryption import HEADER_SIZE, WRAP_OFFSET, Keyring

TEMP_SUFFIX = ".studio-encrypting"


class FileSystemRaw:
    """A filesystem storage's files as bytes on disk."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def names(self) -> list[str]:
        found = []
        for folder, _, files in os.walk(self.root):
            for file in files:
                path = Path(folder) / file
                if file.endswith(TEMP_SUFFIX):
                    path.unlink(missing_ok=True)  # left by a run that was stopped; its file is untouched
                    continue
                found.append(str(path.relative_to(self.root)))
        return sorted(found)

    def head(self, name: str) -> bytes:
        with open(self.root / name, "rb") as f:
            return f.read(HEADER_SIZE)

    def chunks(self, name: str) -> Iterator[bytes]:
        with open(self.root / name, "rb") as f:
            yield from encryption.read_file_chunks(f)

    def replace(self, name: str, chunks: Iterable[bytes]) -> None:
        path = self.root / name
        temp = path.with_name(path.name + TEMP_SUFFIX)
        with open(temp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
        _fsync_dir(path.parent)

    def write_key_part(self, name: str, header: bytes) -> None:
        with open(self.root / name, "r+b") as f:
            f.seek(WRAP_OFFSET)
            f.write(header[WRAP_OFFSET:HEADER_SIZE])
            f.flush()
            os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3Raw:
    """An S3 storage's objects as bytes in the bucket."""

    def __init__(self, storage: S3Storage) -> None:
        self.storage = storage
        self.bucket = storage.bucket
        self.prefix = storage._normalize_name("") if storage.location else ""

    def _key(self, name: str) -> str:
        return str(self.storage._normalize_name(name))

    def names(self) -> list[str]:
        return sorted(
            o.key[len(self.prefix) :].lstrip("/") for o in self.bucket.objects.filter(Prefix=self.prefix)
        )

    def head(self, name: str) -> bytes:
        data: bytes = (
            self.bucket.Object(self._key(name)).get(Range=f"bytes=0-{HEADER_SIZE - 1}")["Body"].read()
        )
        return data

    def chunks(self, name: str) -> Iterator[bytes]:
        body = self.bucket.Object(self._key(name)).get()["Body"]
        try:
            yield from body.iter_chunks(encryption.CHUNK_SIZE)
        finally:
            body.close()

    def replace(self, name: str, chunks: Iterable[bytes]) -> None:
        with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spooled:
            for chunk in chunks:
                spooled.write(chunk)
            spooled.seek(0)
            self.bucket.Object(self._key(name)).upload_fileobj(
                spooled, ExtraArgs={"ContentType": "application/octet-stream", "ACL": "private"}
            )

    def write_key_part(self, name: str, header: bytes) -> None:
        rest = self.chunks(name)

        def rewritten() -> Iterator[bytes]:
            pending = b""
            for chunk in rest:  # the first HEADER_SIZE bytes are replaced, the rest copied as they are
                if len(pending) < HEADER_SIZE:
                    pending += chunk
                    if len(pending) >= HEADER_SIZE:
                        yield header[:HEADER_SIZE] + pending[HEADER_SIZE:]
                    continue
                yield chunk

        self.replace(name, rewritten())


def raw_store(storage: Storage) -> Any:
    if isinstance(storage, S3Storage):
        return S3Raw(storage)
    if isinstance(storage, FileSystemStorage):
        return FileSystemRaw(storage.location)
    raise TypeError(f"No raw access to a {type(storage).__name__}.")


@dataclass
class Counts:
    changed: int = 0
    skipped: int = 0
    plaintext: int = 0

    def __str__(self) -> str:
        return f"{self.changed} changed, {self.skipped} already done, {self.plaintext} not encrypted"


Progress = Callable[[Iterable[str], int, str], Iterable[str]]


def _plain(names: Iterable[str], total: int, what: str) -> Iterable[str]:
    return names


def encrypt_store(store: Any, keyring: Keyring, progress: Progress = _plain) -> Counts:
    """Encrypt every plaintext file of the store in place (resumable: encrypted files are skipped)."""
    counts = Counts()
    names = store.names()
    for name in progress(names, len(names), "Encrypting"):
        if encryption.is_encrypted(store.head(name)):
            counts.skipped += 1
            continue
        store.replace(name, encryption.encrypt_chunks(store.chunks(name), keyring))
        counts.changed += 1
    return counts


def rewrap_store(store: Any, keyring: Keyring, progress: Progress = _plain) -> Counts:
    """Wrap every encrypted file's data key with the keyring's current key (files under it are skipped;
    plaintext files are counted and left for ``encrypt_store``)."""
    counts = Counts()
    names = store.names()
    for name in progress(names, len(names), "Re-wrapping"):
        head = store.head(name)
        if not encryption.is_encrypted(head):
            counts.plaintext += 1
            continue
        header = encryption.Header.parse(head)
        if header.kid == keyring.current_id:
            counts.skipped += 1
            continue
        store.write_key_part(name, encryption.rewrapped(header, keyring).to_bytes())
        counts.changed += 1
    return counts
