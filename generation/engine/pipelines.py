"""Loading pipelines and keeping them warm between jobs."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import (
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)

from .registry import ModelInfo, folder_sha256

logger = logging.getLogger(__name__)

SCHEDULER_CLASSES: dict[str, tuple[Any, dict[str, Any]]] = {
    "Euler": (EulerDiscreteScheduler, {}),
    "Euler a": (EulerAncestralDiscreteScheduler, {}),
    "DPM++ 2M": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 2M Karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "DDIM": (DDIMScheduler, {}),
    "UniPC": (UniPCMultistepScheduler, {}),
    "Heun": (HeunDiscreteScheduler, {}),
    "LMS": (LMSDiscreteScheduler, {}),
    "PNDM": (PNDMScheduler, {"skip_prk_steps": True}),
}


def choose_device() -> tuple[torch.device, torch.dtype]:
    """CUDA in fp16 when present, else the CPU in fp32. ``STUDIO_DEVICE`` overrides (e.g. ``cpu``)."""
    wanted = os.environ.get("STUDIO_DEVICE", "")
    if (wanted in ("", "cuda")) and torch.cuda.is_available():
        return torch.device("cuda"), torch.float16
    return torch.device("cpu"), torch.float32


def cpu_threads() -> int:
    """Threads for CPU inference: ``STUDIO_TORCH_THREADS``, else every core.

    The embedded launcher sets it to one core fewer than the machine has: there the worker shares the CPU with
    daphne, Redis and the browser, and OpenMP threads that wait (spinning) for a sibling the OS has
    descheduled can slow a job several-fold; one free core avoids that at little cost.
    """
    configured = os.environ.get("STUDIO_TORCH_THREADS", "")
    return int(configured) if configured.isdigit() and int(configured) > 0 else max(1, os.cpu_count() or 1)


@dataclass
class LoadedModel:
    info: ModelInfo
    pipe: Any
    sha256: str
    device: torch.device
    dtype: torch.dtype
    base_scheduler_config: Any


def load(info: ModelInfo) -> LoadedModel:
    device, dtype = choose_device()
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads())
    pipe = DiffusionPipeline.from_pretrained(
        str(info.path),
        dtype=dtype,
        local_files_only=True,
        use_safetensors=True,
        safety_checker=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    return LoadedModel(info, pipe, folder_sha256(info.path), device, dtype, pipe.scheduler.config)


class PipelineCache:
    """Keeps the most recently used pipelines loaded (models stay warm between jobs)."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._items: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, info: ModelInfo) -> LoadedModel:
        key = (info.id, str(info.path))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            while len(self._items) >= self.size:
                _, evicted = self._items.popitem(last=False)
                logger.info("Unloading model %s", evicted.info.id)
                del evicted
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            logger.info("Loading model %s from %s", info.id, info.path)
            loaded = load(info)
            self._items[key] = loaded
            return loaded

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def set_scheduler(loaded: LoadedModel, name: str) -> None:
    cls, kwargs = SCHEDULER_CLASSES[name]
    current: Any = loaded.pipe.scheduler
    if type(current) is cls and all(current.config.get(k) == v for k, v in kwargs.items()):
        return
    loaded.pipe.scheduler = cls.from_config(loaded.base_scheduler_config, **kwargs)
