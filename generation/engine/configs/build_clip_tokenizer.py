"""Rebuilds the CLIP tokenizer files shipped in ``clip_tokenizer/`` (``vocab.json``, ``merges.txt``).

CLIP's byte-pair vocabulary is published as ``bpe_simple_vocab_16e6.txt.gz`` (OpenAI's CLIP repository; the
``open_clip_torch`` package ships the same file). The tokenizer files of Stable Diffusion's text encoders are
derived from it the way CLIP's own tokenizer reads it: the first 48,894 merges (49,152 tokens less the
256 bytes and the two special tokens), a vocabulary of every byte, every byte ending a word (``</w>``), every
merge result, then ``<|startoftext|>`` and ``<|endoftext|>`` (49,408 tokens).

Usage: ``python generation/engine/configs/build_clip_tokenizer.py path/to/bpe_simple_vocab_16e6.txt.gz``
(``pip download --no-deps open_clip_torch`` and unzip the wheel to get the file).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # run as a script from anywhere

from generation.engine.bpe import bytes_to_unicode  # noqa: E402

VOCAB_SIZE = 49408
SPECIAL = ["<|startoftext|>", "<|endoftext|>"]
TARGET = Path(__file__).resolve().parent / "clip_tokenizer"


def build(bpe_gz: Path, target: Path = TARGET) -> int:
    lines = gzip.decompress(bpe_gz.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : 1 + VOCAB_SIZE - 2 * 256 - len(SPECIAL)]  # line 0 is a version header
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split(" ")) for m in merges] + SPECIAL
    assert len(vocab) == VOCAB_SIZE, len(vocab)
    target.mkdir(parents=True, exist_ok=True)
    (target / "vocab.json").write_text(
        json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False, separators=(",", ":")),
        encoding="utf-8",
    )
    (target / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return len(vocab)


if __name__ == "__main__":
    print(build(Path(sys.argv[1])), "tokens written to", TARGET)
