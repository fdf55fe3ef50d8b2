"""Loading pipelines and keeping them warm between jobs; schedulers by friendly name; LoRAs for one job."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import (
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FlowMatchHeunDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from safetensors.torch import load_file
from transformers import CLIPTokenizer

from . import registry
from .errors import GenerationError
from .registry import ModelInfo, folder_sha256

logger = logging.getLogger(__name__)

# The component configs single-file checkpoints load with, one folder per family (see configs/).
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
CLIP_TOKENIZER_DIR = CONFIGS_DIR / "clip_tokenizer"

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
# Flow-matching families (SD3, FLUX) sample with these under the same friendly names.
FLOW_SCHEDULER_CLASSES: dict[str, tuple[Any, dict[str, Any]]] = {
    "Euler": (FlowMatchEulerDiscreteScheduler, {}),
    "Heun": (FlowMatchHeunDiscreteScheduler, {}),
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
    if info.checkpoint is not None:
        pipe = load_single_file(info.checkpoint, info.family, dtype)
    else:
        pipe = DiffusionPipeline.from_pretrained(
            str(info.path),
            dtype=dtype,
            local_files_only=True,
            use_safetensors=True,
            requires_safety_checker=False,
            **{"safety_checker": None, **left_out_components(info.path)},
        )
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    sha256 = info.sha256 or folder_sha256(info.path)
    return LoadedModel(info, pipe, sha256, device, dtype, pipe.scheduler.config)


def left_out_components(folder: Path) -> dict[str, None]:
    """The components a diffusers folder's ``model_index.json`` leaves out (``[null, null]``: SD3 saved
    without its T5 encoder, for one), passed as None so that the pipeline loads without them."""
    index = json.loads((folder / "model_index.json").read_text())
    return {
        name: None
        for name, spec in index.items()
        if not name.startswith("_") and isinstance(spec, list) and spec and spec[0] is None
    }


def clip_tokenizer(spec: dict[str, Any]) -> CLIPTokenizer:
    """CLIP's tokenizer from the shipped vocabulary; ``spec`` gives what differs between text encoders (the
    padding token: ``<|endoftext|>`` for OpenAI's CLIP-L, ``!`` for the OpenCLIP encoders)."""
    return CLIPTokenizer(
        str(CLIP_TOKENIZER_DIR / "vocab.json"),
        str(CLIP_TOKENIZER_DIR / "merges.txt"),
        bos_token="<|startoftext|>",  # noqa: S106 - tokens, not passwords
        eos_token="<|endoftext|>",  # noqa: S106
        unk_token="<|endoftext|>",  # noqa: S106
        pad_token=spec.get("pad_token", "<|endoftext|>"),
        model_max_length=int(spec.get("model_max_length", 77)),
    )


def load_single_file(checkpoint: Path, family: str, dtype: torch.dtype) -> Any:
    """A single-file checkpoint as a pipeline, offline: the component configs come from
    ``CONFIGS_DIR/<family>`` and the tokenizers from the shipped CLIP vocabulary; components the family's
    config leaves out (SD3's T5 encoder) are left out of the pipeline."""
    config_dir = CONFIGS_DIR / family
    if not (config_dir / "model_index.json").exists():
        raise GenerationError(f"No single-file configuration is shipped for the {family} family.")
    index = json.loads((config_dir / "model_index.json").read_text())
    tokenizers = json.loads((config_dir / "tokenizers.json").read_text())
    components: dict[str, Any] = {name: clip_tokenizer(spec) for name, spec in tokenizers.items()}
    components.update(
        {name: None for name, spec in index.items() if isinstance(spec, list) and spec[0] is None}
    )
    pipeline_class = getattr(diffusers, index["_class_name"])
    return pipeline_class.from_single_file(
        str(checkpoint), config=str(config_dir), local_files_only=True, dtype=dtype, **components
    )


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

    def loaded(self) -> list[str]:
        """Ids of the models loaded now, least recently used first."""
        with self._lock:
            return [info_id for info_id, _ in self._items]


def device_memory_bytes() -> int | None:
    """GPU memory this process holds (allocated by torch, on every visible device); None without CUDA."""
    if not torch.cuda.is_available():
        return None
    return sum(torch.cuda.memory_reserved(i) for i in range(torch.cuda.device_count()))


def set_scheduler(loaded: LoadedModel, name: str) -> None:
    cls, kwargs = (FLOW_SCHEDULER_CLASSES if loaded.info.flow_matching else SCHEDULER_CLASSES)[name]
    current: Any = loaded.pipe.scheduler
    if type(current) is cls and all(current.config.get(k) == v for k, v in kwargs.items()):
        return
    loaded.pipe.scheduler = cls.from_config(loaded.base_scheduler_config, **kwargs)


def preview_latents(loaded: LoadedModel, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """The step's latents as a batch of channels × h × w images: FLUX packs 2×2 latent patches into tokens,
    unpacked here so the latent→RGB factors apply to its 16 channels."""
    if latents.ndim == 3:
        pipe = loaded.pipe
        return pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
    return latents


@contextmanager
def loras_applied(loaded: LoadedModel, loras: Sequence[tuple[str, float]]) -> Iterator[None]:
    """Apply installed LoRAs (``(id, weight)`` pairs) to the cached pipeline for one job, and take them
    off afterwards whatever happens, so the pipeline is left exactly as loaded. Only safetensors files are
    read."""
    if not loras:
        yield
        return
    pipe = loaded.pipe
    names: list[str] = []
    try:  # (a LoRA that fails half-way may have changed layers already: the finally undoes it too)
        for i, (lora_id, _weight) in enumerate(loras):
            lora = registry.get_lora(lora_id)
            if lora is None:
                raise GenerationError(f"The LoRA {lora_id!r} is no longer installed.")
            if lora.family != loaded.info.family:
                raise GenerationError(f"The LoRA {lora.name!r} is not for {loaded.info.family} models.")
            name = f"lora{i}_{lora.id}"
            pipe.load_lora_weights(load_file(str(lora.path)), adapter_name=name)
            names.append(name)
        pipe.set_adapters(names, adapter_weights=[float(weight) for _, weight in loras])
        yield
    finally:
        pipe.unload_lora_weights()


# --- pipelines for the image-based modes --

MODE_PIPELINE_KINDS = ("img2img", "inpaint")


def mode_pipeline(loaded: LoadedModel, kind: str) -> Any:
    """The image-to-image (``img2img``) or inpainting (``inpaint``) pipeline of a loaded model, built from its
    text-to-image pipeline's components (``from_pipe``: no weights are read or copied again) and kept with
    the loaded model. It always samples with the text-to-image pipeline's current scheduler."""
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

    if kind not in MODE_PIPELINE_KINDS:
        raise ValueError(f"No pipeline for {kind!r}")
    built: dict[str, Any] = vars(loaded).setdefault("mode_pipes", {})
    if kind not in built:
        auto = AutoPipelineForImage2Image if kind == "img2img" else AutoPipelineForInpainting
        pipe = auto.from_pipe(loaded.pipe)
        pipe.set_progress_bar_config(disable=True)
        built[kind] = pipe
    pipe = built[kind]
    pipe.scheduler = loaded.pipe.scheduler
    return pipe


# --- tiny preview decoders --


def preview_decoder(loaded: LoadedModel) -> Any | None:
    """The tiny decoder (``AutoencoderTiny``) installed for the model's family, on the model's device and
    dtype, or None (previews then use the family's latent→RGB factors). Loaded once and kept with the loaded
    model; a decoder installed or replaced since is picked up at the next job. Only safetensors are read.
    A decoder that fails to load is logged and the previews fall back to the factors: a preview never fails
    a job."""
    from diffusers import AutoencoderTiny

    info = registry.get_preview_decoder(loaded.info.family)
    kept: dict[str, Any] = vars(loaded).setdefault("preview_decoder", {})
    if info is None:
        kept.clear()
        return None
    key = (str(info.path), info.sha256)
    if kept.get("key") != key:
        kept.clear()
        try:
            decoder = AutoencoderTiny.from_pretrained(
                str(info.path), dtype=loaded.dtype, local_files_only=True, use_safetensors=True
            )
            decoder = decoder.to(loaded.device).eval()
        except Exception:
            logger.exception(
                "Could not load the %s preview decoder; previews use latent factors", info.family
            )
            decoder = None
        kept.update(key=key, decoder=decoder)
    return kept["decoder"]
