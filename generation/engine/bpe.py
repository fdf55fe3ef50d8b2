"""CLIP's byte-level BPE alphabet, shared by the demo model's tokenizer and the shipped CLIP tokenizer's
build script. Plain Python."""

from __future__ import annotations


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte → printable-character table."""
    bs = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))
