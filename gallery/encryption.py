"""Encryption at rest: envelope encryption of every file the studio stores.

Each file gets its own random 256-bit data key. The body is AES-256-GCM in authenticated chunks of
``CHUNK_SIZE`` bytes, so a file streams in bounded memory and any byte range can be read by decrypting only
the chunks it touches. The data key is wrapped (AES key wrap, RFC 3394) by the master key and kept in the
file's header beside the master key's id, so rotating the master key rewrites 48 header bytes and never the
image. Layout (big-endian)::

    magic "STUDIOE1" (8) | chunk size (4) | nonce prefix (7) | master key id (8) | wrapped data key (40)
    chunk 0: ciphertext + 16-byte tag | chunk 1 | ... | last chunk (may hold 0 plaintext bytes)

Chunk ``i``'s nonce is ``prefix || i (4 bytes) || last (1 byte)`` and its associated data is the header's
first 19 bytes, so chunks cannot be reordered, dropped, or cut off at a chunk boundary, and the header's
layout cannot be changed, without the tag check failing.

This module knows bytes and keys only; ``gallery.storage`` puts it under Django's storages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import secrets
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

MAGIC = b"STUDIOE1"
CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
PREFIX_SIZE = 7
KEY_ID_SIZE = 8
WRAPPED_SIZE = 40
# The authenticated, never-changing part of the header, then the part a key rotation rewrites.
FIXED_SIZE = len(MAGIC) + 4 + PREFIX_SIZE
WRAP_OFFSET = FIXED_SIZE
HEADER_SIZE = FIXED_SIZE + KEY_ID_SIZE + WRAPPED_SIZE
KEY_BYTES = 32


class EncryptionError(Exception):
    """A file that cannot be decrypted: wrong or unknown key, or bytes that were changed."""


class BadKey(EncryptionError):
    """A master key that is not 32 bytes of URL-safe base64."""


class UnknownKey(EncryptionError):
    """A file wrapped by a master key that is not in the keyring."""


def generate_key() -> str:
    """A new master key: 32 random bytes in URL-safe base64 (what ``manage.py studio_keygen`` prints)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def parse_key(text: str, *, source: str = "STUDIO_ENCRYPTION_KEY") -> bytes:
    """The 32 key bytes of a URL-safe base64 master key, or a clear error naming where it came from."""
    value = text.strip()
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise BadKey(f"{source} is not URL-safe base64; make one with `manage.py studio_keygen`.") from exc
    if len(raw) != KEY_BYTES:
        raise BadKey(
            f"{source} must be 32 bytes in URL-safe base64 (it is {len(raw)}); make one with "
            "`manage.py studio_keygen`."
        )
    return raw


def key_id(key: bytes) -> bytes:
    """A master key's public name: 8 bytes of a hash of it (it tells which key wrapped a file, no more)."""
    return hashlib.sha256(b"studio master key id\0" + key).digest()[:KEY_ID_SIZE]


@dataclass
class Keyring:
    """The current master key (new files are wrapped with it) and older ones still accepted for reading."""

    current: bytes
    previous: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_id = {key_id(k): k for k in [*self.previous, self.current]}

    @property
    def current_id(self) -> bytes:
        return key_id(self.current)

    def get(self, kid: bytes) -> bytes:
        try:
            return self._by_id[kid]
        except KeyError:
            raise UnknownKey(
                f"This file's data key was wrapped by master key {kid.hex()}, which is not configured "
                f"(the current key is {self.current_id.hex()})."
            ) from None

    def knows(self, kid: bytes) -> bool:
        return kid in self._by_id


def is_encrypted(head: bytes) -> bool:
    """Whether bytes starting a file are this format's header (plaintext PNGs and JPEGs never are)."""
    return head[: len(MAGIC)] == MAGIC


@dataclass(frozen=True)
class Header:
    chunk_size: int
    prefix: bytes
    kid: bytes
    wrapped: bytes

    @property
    def fixed(self) -> bytes:
        return MAGIC + struct.pack(">I", self.chunk_size) + self.prefix

    def to_bytes(self) -> bytes:
        return self.fixed + self.kid + self.wrapped

    @classmethod
    def parse(cls, data: bytes) -> Header:
        if len(data) < HEADER_SIZE or not is_encrypted(data):
            raise EncryptionError("Not an encrypted studio file (no header).")
        (chunk_size,) = struct.unpack(">I", data[8:12])
        if not 16 <= chunk_size <= 64 * 1024 * 1024:
            raise EncryptionError("The encrypted file's header is damaged (chunk size).")
        return cls(chunk_size, data[12:FIXED_SIZE], data[FIXED_SIZE:WRAP_OFFSET + KEY_ID_SIZE],
                   data[WRAP_OFFSET + KEY_ID_SIZE:HEADER_SIZE])  # fmt: skip

    def data_key(self, keyring: Keyring) -> bytes:
        try:
            return aes_key_unwrap(keyring.get(self.kid), self.wrapped)
        except InvalidUnwrap as exc:
            raise EncryptionError("The file's data key does not unwrap with the configured key.") from exc


def new_header(keyring: Keyring, chunk_size: int = CHUNK_SIZE) -> tuple[Header, bytes]:
    data_key = secrets.token_bytes(KEY_BYTES)
    header = Header(
        chunk_size,
        secrets.token_bytes(PREFIX_SIZE),
        keyring.current_id,
        aes_key_wrap(keyring.current, data_key),
    )
    return header, data_key


def rewrapped(header: Header, keyring: Keyring) -> Header:
    """The same header with its data key wrapped by the keyring's current key."""
    data_key = header.data_key(keyring)
    return Header(
        header.chunk_size, header.prefix, keyring.current_id, aes_key_wrap(keyring.current, data_key)
    )


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">I", index) + (b"\x01" if last else b"\x00")


def encrypt_chunks(
    source: Iterable[bytes], keyring: Keyring, chunk_size: int = CHUNK_SIZE
) -> Iterator[bytes]:
    """The encrypted file, header first, for plaintext given as any iterable of byte strings. Holds at most
    two chunks of plaintext at a time (to know which chunk is the last)."""
    header, data_key = new_header(keyring, chunk_size)
    aead, aad = AESGCM(data_key), header.fixed
    yield header.to_bytes()
    pending = bytearray()
    index = 0
    held: bytes | None = None
    for piece in source:
        pending += piece
        while len(pending) >= chunk_size:
            if held is not None:
                yield aead.encrypt(_nonce(header.prefix, index, False), held, aad)
                index += 1
            held = bytes(pending[:chunk_size])
            del pending[:chunk_size]
    if held is not None and pending:
        yield aead.encrypt(_nonce(header.prefix, index, False), held, aad)
        index += 1
        held = None
    last = bytes(pending) if held is None else held
    yield aead.encrypt(_nonce(header.prefix, index, True), last, aad)


def encrypt_bytes(data: bytes, keyring: Keyring) -> bytes:
    return b"".join(encrypt_chunks([data], keyring))


def read_file_chunks(f: IO[bytes], size: int = CHUNK_SIZE) -> Iterator[bytes]:
    while chunk := f.read(size):
        yield chunk


def layout(cipher_size: int, chunk_size: int) -> tuple[int, int]:
    """(number of chunks, plaintext size) of an encrypted file of ``cipher_size`` bytes."""
    body = cipher_size - HEADER_SIZE
    if body < TAG_SIZE:
        raise EncryptionError("The encrypted file is truncated.")
    stride = chunk_size + TAG_SIZE
    count = max(1, -(-body // stride))
    last = body - (count - 1) * stride
    if last < TAG_SIZE:
        raise EncryptionError("The encrypted file is truncated.")
    return count, body - count * TAG_SIZE


def plaintext_size(cipher_size: int, header: Header) -> int:
    return layout(cipher_size, header.chunk_size)[1]


class DecryptingReader(io.RawIOBase):
    """A read-only, seekable file of the plaintext over a seekable (or, read front to back, an unseekable)
    file of ciphertext of known size. Memory: one chunk."""

    def __init__(self, raw: IO[bytes], cipher_size: int, keyring: Keyring) -> None:
        super().__init__()
        self._raw = raw
        self._raw_pos = 0
        self._header = Header.parse(self._read_exactly(HEADER_SIZE))
        self._aead = AESGCM(self._header.data_key(keyring))
        self._count, self.size = layout(cipher_size, self._header.chunk_size)
        self._pos = 0
        self._chunk_index = -1
        self._chunk = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _load(self, index: int) -> None:
        stride = self._header.chunk_size + TAG_SIZE
        start = HEADER_SIZE + index * stride
        end = HEADER_SIZE + self.size + self._count * TAG_SIZE
        if start != self._raw_pos:  # a jump: only seekable ciphertext allows it
            self._raw.seek(start)
            self._raw_pos = start
        data = self._read_exactly(min(stride, end - start))
        last = index == self._count - 1
        try:
            self._chunk = self._aead.decrypt(
                _nonce(self._header.prefix, index, last), data, self._header.fixed
            )
        except InvalidTag as exc:
            raise EncryptionError(
                "An encrypted file was changed or damaged (its authentication failed)."
            ) from exc
        self._chunk_index = index

    def _read_exactly(self, length: int) -> bytes:
        parts, got = [], 0
        while got < length:
            piece = self._raw.read(length - got)
            if not piece:
                raise EncryptionError("The encrypted file is truncated.")
            parts.append(piece)
            got += len(piece)
        self._raw_pos += got
        return b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self.size:
            return 0
        chunk_size = self._header.chunk_size
        index, offset = divmod(self._pos, chunk_size)
        if index != self._chunk_index:
            self._load(index)
        piece = self._chunk[offset : offset + len(buffer)]
        buffer[: len(piece)] = piece
        self._pos += len(piece)
        return len(piece)

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def decrypt_bytes(data: bytes, keyring: Keyring) -> bytes:
    with DecryptingReader(io.BytesIO(data), len(data), keyring) as reader:
        return reader.read()


def load_keyring(
    current: str, previous: Iterable[str] = (), *, source: str = "STUDIO_ENCRYPTION_KEY"
) -> Keyring:
    return Keyring(
        parse_key(current, source=source),
        [parse_key(p, source=f"{source}'s previous keys") for p in previous if p.strip()],
    )


def write_key_file(path: os.PathLike[str] | str, key: str) -> None:
    """Create a key file readable by its owner only (never briefly readable by others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
