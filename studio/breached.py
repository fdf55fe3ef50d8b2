"""The breached-password check: a password found in a list of leaked passwords is refused, with no network.

The list is a file of SHA-1 digests, one upper-case hex digest a line, sorted, optionally followed by
``:count`` — the format of the Pwned Passwords downloads, so an operator can point
``STUDIO_BREACHED_PASSWORDS_FILE`` at a full offline copy of that corpus. The studio ships
``studio/data/breached-sha1.txt``: the 30,000 most common passwords of a public corpus of leaked
passwords (``manage.py build_breached_list`` makes such a file from plain-text lists or digest files).
Lookups are a binary search over the memory-mapped file, so even a multi-gigabyte list costs no memory.
"""

from __future__ import annotations

import hashlib
import mmap
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError

DIGEST_LENGTH = 40


def sha1_hex(password: str) -> bytes:
    return hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper().encode()


def _line_start(data: mmap.mmap, position: int) -> int:
    """The start of the line that ``position`` falls in."""
    return data.rfind(b"\n", 0, position) + 1


def contains(path: Path, digest: bytes) -> bool:
    """Whether the sorted digest file at ``path`` lists ``digest`` (40 upper-case hex bytes)."""
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        low, high = 0, len(data)
        while low < high:
            middle = _line_start(data, (low + high) // 2)
            if middle < low:
                middle = low
            found = data[middle : middle + DIGEST_LENGTH]
            if found == digest:
                return True
            if found < digest:
                end = data.find(b"\n", middle)
                low = len(data) if end < 0 else end + 1
            else:
                high = middle
    return False


class BreachedPasswordValidator:
    """Refuses passwords that appear in the breached-password list (as typed, or in lower case)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path else Path(settings.STUDIO_BREACHED_PASSWORDS_FILE)

    def validate(self, password: str, user: Any = None) -> None:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            raise ImproperlyConfigured(f"The breached-password list {self.path} is missing or empty.")
        candidates = {password, password.lower()}
        if any(contains(self.path, sha1_hex(candidate)) for candidate in candidates):
            raise ValidationError(
                "This password appears in lists of passwords leaked in data breaches. Choose another one.",
                code="password_breached",
            )

    def get_help_text(self) -> str:
        return "Your password can’t be one that has appeared in a data breach."
