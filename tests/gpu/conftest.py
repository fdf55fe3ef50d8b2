"""What the GPU tests share: random-weight models in the full published architectures, built once."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def random_models(tmp_path_factory) -> tuple[Callable[[str], Path], Callable[[], Path]]:
    """``(folder, decoder)``: ``folder(family)`` is a random-weight fp16 diffusers folder of an SD 1.5-size
    (``sd1``) or SDXL-size (``sdxl``) model, ``decoder()`` a TAESD-size tiny preview decoder; each is built
    on the GPU the first time it is asked for."""
    import torch

    # The benchmark's builders (bench/ is scripts, not a package: imported by name).
    gpu_modes = importlib.import_module("bench.gpu_modes")
    root = tmp_path_factory.mktemp("gpu-models")
    made: dict[str, Path] = {}

    def folder(family: str) -> Path:
        if family not in made:
            made[family] = gpu_modes.build_random_folder(
                family, root / family, device="cuda", dtype=torch.float16, tiny=False
            )
        return made[family]

    def decoder() -> Path:
        if "taesd" not in made:
            made["taesd"] = gpu_modes.build_preview_decoder(root / "taesd")
        return made["taesd"]

    return folder, decoder
