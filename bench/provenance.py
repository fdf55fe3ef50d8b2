"""`make bench`: what Content Credentials and encryption at rest cost, against their baselines in this run.

* signing: writing a finished image's PNG with its text chunks, then the same plus its C2PA manifest;
* storing: saving a PNG and its thumbnail to the filesystem storage, plain and encrypted;
* serving: reading them back in 4 KiB blocks (as FileResponse does), plain and decrypted.

Medians over ``--runs`` alternating runs; ratios say how many times the baseline each costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="studio-bench-provenance-"))
    os.environ.update(
        STUDIO_ENV="test", STUDIO_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="studio.settings"
    )
    import django

    django.setup()
    from django.core.files.base import ContentFile
    from django.core.files.storage import FileSystemStorage
    from PIL import Image

    from gallery import credentials, encryption, pngmeta
    from gallery.storage import EncryptedFileSystemStorage

    image = Image.effect_noise((args.size, args.size), 60).convert("RGB")
    params = {"prompt": "a red circle", "seed": 1, "steps": 20, "scheduler": "Euler", "guidance_scale": 5.0,
              "width": args.size, "height": args.size}  # fmt: skip
    provenance = {"model_name": "Demo", "model_sha256": "ab" * 32, "asset": "x"}
    manifest = credentials.manifest(
        "x.png",
        [credentials.actions({"action": "c2pa.created", "digitalSourceType": credentials.TRAINED})],
    )
    credentials.ensure_own_credentials()

    def plain_png() -> bytes:
        return pngmeta.png_with_provenance(image, params, provenance)

    def signed_png() -> bytes:
        return credentials.sign_png(manifest, plain_png())

    png = plain_png()
    thumb = ContentFile(b"\xff\xd8" + os.urandom(12_000))
    plain = FileSystemStorage(location=str(data_dir / "plain"))
    encrypted = EncryptedFileSystemStorage(location=str(data_dir / "encrypted"))
    from django.conf import settings

    settings.STUDIO_ENCRYPTION_KEY = encryption.generate_key()

    def store(storage: FileSystemStorage) -> Callable[[], object]:
        return lambda: (storage.save("a.png", ContentFile(png)), storage.save("a.jpg", thumb))

    def serve(storage: FileSystemStorage, name: str) -> Callable[[], object]:
        def read() -> None:
            with storage.open(name, "rb") as f:
                while f.read(4096):
                    pass

        return read

    names = {
        "plain": plain.save("s.png", ContentFile(png)),
        "encrypted": encrypted.save("s.png", ContentFile(png)),
    }
    rows: list[tuple[str, float, float]] = []
    for label, base, new in (
        ("sign a PNG", plain_png, signed_png),
        ("store PNG + thumbnail", store(plain), store(encrypted)),
        ("serve the PNG", serve(plain, names["plain"]), serve(encrypted, names["encrypted"])),
    ):
        before: list[float] = []
        after: list[float] = []
        for _ in range(3):  # alternate, so a slower moment of the machine hits both
            before.append(median_ms(base, args.runs // 3 or 1))
            after.append(median_ms(new, args.runs // 3 or 1))
        rows.append((label, statistics.median(before), statistics.median(after)))
    print(f"{args.size}×{args.size} PNG of {len(png) / 1024:.0f} KiB, {args.runs} runs each")
    print(f"{'':24} {'baseline ms':>12} {'with ms':>10} {'ratio':>7}")
    for label, a, b in rows:
        print(f"{label:24} {a:12.2f} {b:10.2f} {b / a:7.2f}")


if __name__ == "__main__":
    main()
