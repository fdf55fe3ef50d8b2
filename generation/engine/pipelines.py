"""Loading pipelines, each family on its fast path, and keeping them warm between jobs (on the GPU, then in
host memory); schedulers by friendly name; LoRAs for one job."""

from __future__ import annotations

import gc
import itertools
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
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
from django.conf import settings
from safetensors.torch import load_file
from transformers import CLIPTokenizer

from . import registry
from .errors import GenerationError
from .families import FAMILIES, FastPath
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


DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}

# torch.compile's modes for the denoiser: autotuned kernels; with STUDIO_CUDA_GRAPHS, CUDA graphs as well (no
# per-kernel launch cost, at the price of memory held for each shape recorded).
COMPILE_MODE = "max-autotune-no-cudagraphs"
CUDA_GRAPHS_COMPILE_MODE = "reduce-overhead"
# Steps of a warm-up call (``warm_shape``): the first compiles; CUDA graphs run once eagerly, then record.
WARM_UP_STEPS = 3


def compute_device() -> torch.device:
    """CUDA when present, else the CPU. ``STUDIO_DEVICE`` overrides (e.g. ``cpu``)."""
    wanted = os.environ.get("STUDIO_DEVICE", "")
    if wanted in ("", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@dataclass(frozen=True)
class Acceleration:
    """How one model runs on one device. The defaults are the CPU's: fp32, as loaded."""

    dtype: torch.dtype = torch.float32
    # The VAE kept in fp32 while the rest runs in ``dtype`` (``keep_vae_in_fp32``).
    vae_upcast: bool = False
    channels_last: bool = False
    # Fused attention (``torch.nn.functional.scaled_dot_product_attention``) in every attention layer.
    sdpa: bool = False
    # torch.compile's mode for the denoiser; None: eager.
    compile_mode: str | None = None

    def describe(self) -> str:
        """In words, for the log: "fp16, VAE in fp32, channels-last, SDPA attention"."""
        parts = [DTYPE_NAMES[self.dtype]]
        parts += ["VAE in fp32"] if self.vae_upcast else []
        parts += ["channels-last"] if self.channels_last else []
        parts += ["SDPA attention"] if self.sdpa else []
        parts += [f"torch.compile ({self.compile_mode})"] if self.compile_mode else []
        return ", ".join(parts)


def fast_path(info: ModelInfo | None, device: torch.device) -> Acceleration:
    """How ``info`` runs on ``device``. On CUDA each option comes from the model's studio.json where it says
    (``dtype``, ``vae_upcast``, ``channels_last``, ``torch_compile``), else from the environment
    (``STUDIO_DTYPE``, ``STUDIO_CHANNELS_LAST``, ``STUDIO_TORCH_COMPILE`` with ``STUDIO_CUDA_GRAPHS``), else
    from its family (``families.FastPath``; torch.compile is off by default); attention is always SDPA. On the
    CPU it is always fp32 and eager: torch.compile there would build C++ kernels at every worker start, and
    the half precisions run slower than fp32 on most CPUs."""
    if device.type != "cuda":
        return Acceleration()
    family = FAMILIES[info.family].fast_path if info is not None else FastPath()
    chosen = registry.fast_path_overrides(info.id, info.meta) if info is not None else {}
    dtype = DTYPES[chosen.get("dtype") or settings.STUDIO_DTYPE or family.dtype]
    channels_last = settings.STUDIO_CHANNELS_LAST
    compiled = chosen.get("torch_compile", settings.STUDIO_TORCH_COMPILE)
    return Acceleration(
        dtype=dtype,
        # Only fp16 overflows: a VAE in bf16 or fp32 needs no upcast.
        vae_upcast=dtype == torch.float16 and chosen.get("vae_upcast", family.vae_upcast),
        channels_last=chosen.get(
            "channels_last", family.channels_last if channels_last is None else channels_last
        ),
        sdpa=True,
        compile_mode=(CUDA_GRAPHS_COMPILE_MODE if settings.STUDIO_CUDA_GRAPHS else COMPILE_MODE)
        if compiled
        else None,
    )


def choose_device(info: ModelInfo | None = None) -> tuple[torch.device, torch.dtype]:
    """The device models run on (``compute_device``) and the precision ``info`` runs in there
    (``fast_path``): on CUDA its family's, or what its studio.json or ``STUDIO_DTYPE`` ask for; on the CPU
    fp32. Without a model, the precision of a family that says nothing (fp16 on CUDA)."""
    device = compute_device()
    return device, fast_path(info, device).dtype


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
    # Where it runs (the pipeline cache may keep it in host memory meanwhile) and in what precision.
    device: torch.device
    dtype: torch.dtype
    base_scheduler_config: Any
    fast_path: Acceleration = field(default_factory=Acceleration)
    # The (width, height, images per call) shapes a compiled denoiser has run at (``warm_shape``).
    warmed: set[tuple[int, int, int]] = field(default_factory=set)


def load(info: ModelInfo, device: torch.device | None = None) -> LoadedModel:
    """Read a model from disk into host memory, set up for its fast path on ``device`` (by default
    ``compute_device()``): in its precision, with its options applied (``accelerate``). The pipeline cache
    moves it to the device."""
    device = device if device is not None else compute_device()
    options = fast_path(info, device)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads())
    if info.checkpoint is not None:
        pipe = load_single_file(info.checkpoint, info.family, options.dtype)
    else:
        # (an upcast VAE is read in fp32 straight away, not rounded to fp16 and back)
        dtype: Any = {"default": options.dtype, "vae": torch.float32} if options.vae_upcast else options.dtype
        pipe = DiffusionPipeline.from_pretrained(
            str(info.path),
            dtype=dtype,
            local_files_only=True,
            use_safetensors=True,
            requires_safety_checker=False,
            **{"safety_checker": None, **left_out_components(info.path)},
        )
    pipe.set_progress_bar_config(disable=True)
    accelerate(pipe, options)
    sha256 = info.sha256 or folder_sha256(info.path)
    return LoadedModel(info, pipe, sha256, device, options.dtype, pipe.scheduler.config, fast_path=options)


def denoiser(pipe: Any) -> Any | None:
    """The pipeline's UNet, or its transformer (SD3, FLUX)."""
    unet = getattr(pipe, "unet", None)
    return unet if unet is not None else getattr(pipe, "transformer", None)


def accelerate(pipe: Any, options: Acceleration) -> None:
    """Set a pipeline up for ``options``, in place (the weights stay on their device; the precision is the
    loader's): the VAE in fp32, channels-last convolutions (the UNet's and the VAE's: a transformer's work is
    matrix products, which the memory format does not change), SDPA attention, and the denoiser compiled
    (lazily: it compiles at its first call for each shape, see ``warm_shape``)."""
    vae = getattr(pipe, "vae", None)
    unet = getattr(pipe, "unet", None)
    if options.vae_upcast and vae is not None:
        keep_vae_in_fp32(vae, options.dtype)
    if options.channels_last:
        for module in (unet, vae):
            if module is not None:
                module.to(memory_format=torch.channels_last)
    if options.sdpa:
        for module in (denoiser(pipe), vae):
            use_sdpa(module)
    if options.compile_mode is not None:
        module = denoiser(pipe)
        if module is not None:
            tune_inductor()
            module.compile(mode=options.compile_mode)


def keep_vae_in_fp32(vae: Any, dtype: torch.dtype) -> None:
    """Run the VAE in fp32 inside a pipeline that runs in ``dtype``: its weights in fp32, what enters its
    encoder and decoder cast to fp32 and what leaves them cast back to ``dtype``, so the pipeline hands it
    and gets back the tensors it would with a VAE in ``dtype``. The same for every family: the SDXL pipelines
    would upcast on their own (``force_upcast``) but cast the weights down again after each image-to-image
    encode, and SD3's do not upcast at all."""
    if vae.dtype != torch.float32:
        vae.to(torch.float32)
    if getattr(vae.config, "force_upcast", False):
        vae.register_to_config(force_upcast=False)  # it is upcast already

    def to_fp32(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return tuple(_cast(a, torch.float32) for a in args), {
            k: _cast(v, torch.float32) for k, v in kwargs.items()
        }

    def to_dtype(module: Any, args: Any, output: Any) -> Any:
        return _cast(output, dtype)

    # Encoding runs encoder → quant_conv; decoding post_quant_conv → decoder (the quant convs are optional).
    quant, post_quant = getattr(vae, "quant_conv", None), getattr(vae, "post_quant_conv", None)
    for first in (vae.encoder, post_quant if post_quant is not None else vae.decoder):
        first.register_forward_pre_hook(to_fp32, with_kwargs=True)
    for last in (quant if quant is not None else vae.encoder, vae.decoder):
        last.register_forward_hook(to_dtype)


def _cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(dtype)
    return value


def use_sdpa(module: Any | None) -> None:
    """PyTorch's fused attention (``scaled_dot_product_attention``: flash or memory-efficient kernels) in
    every attention layer of ``module`` that has diffusers' plain one. Recent diffusers choose it already;
    this makes sure of it whatever a model's config or an older diffusers chose. The transformers' own
    processors (SD3's joint attention, FLUX's) call it themselves."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    processors = getattr(module, "attn_processors", None)
    if module is None or not processors:
        return
    if any(type(p) is AttnProcessor for p in processors.values()):
        module.set_attn_processor(
            {name: AttnProcessor2_0() if type(p) is AttnProcessor else p for name, p in processors.items()}
        )


def tune_inductor() -> None:
    """The compiler settings of PyTorch's own SDXL recipe ("Accelerating Generative AI Part III"): 1×1
    convolutions as matrix products, coordinate-descent tuning of the generated kernels, and no epilogue
    fusion (it slowed the UNet's convolutions there). They apply to the whole process."""
    import torch._inductor.config as inductor

    inductor.conv_1x1_as_mm = True
    inductor.coordinate_descent_tuning = True
    inductor.coordinate_descent_check_all_directions = True
    inductor.epilogue_fusion = False


def warm_shape(loaded: LoadedModel, width: int, height: int, batch: int) -> bool:
    """Make sure a compiled model has run at this image size and batch (images per pipeline call) before a
    job's time counts. The first time a shape is seen a short call (``WARM_UP_STEPS`` steps, the model's
    default guidance, latents out) compiles the denoiser for it and, with CUDA graphs, records them; that
    takes seconds to minutes. Cheap otherwise: a shape warmed already, or a model that is not compiled (eager
    runs need no warm-up), returns at once. True when it ran a warm-up."""
    shape = (width, height, batch)
    if loaded.fast_path.compile_mode is None or shape in loaded.warmed:
        return False
    logger.info("Warming model %s up at %d×%d, %d per call", loaded.info.id, width, height, batch)
    started = time.perf_counter()
    with torch.inference_mode():
        loaded.pipe(
            prompt="",
            num_inference_steps=WARM_UP_STEPS,
            guidance_scale=loaded.info.default_guidance,
            width=width,
            height=height,
            num_images_per_prompt=batch,
            output_type="latent",
        )
    loaded.warmed.add(shape)
    logger.info("Warmed model %s up in %.1f s", loaded.info.id, time.perf_counter() - started)
    return True


def pipeline_bytes(pipe: Any) -> int:
    """The bytes a pipeline's weights take: the parameters and buffers of its torch modules (a tensor that
    components share counted once)."""
    seen: set[int] = set()
    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            for tensor in itertools.chain(component.parameters(), component.buffers()):
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    total += tensor.numel() * tensor.element_size()
    return total


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


GPU = "gpu"
HOST = "host"


@dataclass(frozen=True)
class Placement:
    """Where a cached model is (``GPU`` or ``HOST``) and the bytes of its weights."""

    tier: str
    bytes: int


@dataclass
class _Slot:
    loaded: LoadedModel
    bytes: int
    tier: str | None = None  # None: being placed
    # Modules that run with the model (its jobs' ControlNets): key → (module, bytes), least recently used
    # first. They live where the model does, and their bytes count in ``bytes``.
    addons: OrderedDict[str, tuple[Any, int]] = field(default_factory=OrderedDict)


# The add-on modules (ControlNets) kept with one model: a job takes up to four at once.
MAX_ADDONS = 4


class PipelineCache:
    """Keeps recently used pipelines loaded between jobs, bounded by memory: the least recently used leave
    first.

    With a GPU there are two tiers. A model runs on the GPU; when loading another would take the weights
    there past ``gpu_budget``, the least recently used move to host memory (``pipe.to("cpu")``) and stay warm
    there: moving back takes about a second where loading from disk takes tens. Host memory holds them while
    they fit ``host_budget``; past it the least recently used are unloaded. Without a GPU there is one tier,
    host memory, bounded by ``host_budget``. A model larger than a budget still loads, alone in its tier.
    Sizes are the weights' bytes (``pipeline_bytes``; a job's activations come on top: hence the budget's
    share of the GPU). The ControlNets a model's jobs use are kept with it (``addon``): on its device, moved
    and unloaded with it, their bytes counted as its own.

    The budgets default to the settings (``STUDIO_GPU_MEMORY_FRACTION`` of the GPU's memory, or
    ``STUDIO_GPU_CACHE_BYTES``; ``STUDIO_HOST_CACHE_BYTES``, or half of the host's memory), ``device`` to
    ``compute_device()``, and ``loader`` (a model from disk into host memory, set up for the device) to
    ``load``.
    """

    def __init__(
        self,
        *,
        device: torch.device | None = None,
        gpu_budget: int | None = None,
        host_budget: int | None = None,
        loader: Callable[[ModelInfo, torch.device], LoadedModel] | None = None,
    ) -> None:
        self.device = device if device is not None else compute_device()
        self.has_gpu = self.device.type == "cuda"
        if not self.has_gpu:
            self.gpu_budget = 0
        else:
            self.gpu_budget = gpu_budget if gpu_budget is not None else gpu_budget_bytes(self.device)
        self.host_budget = host_budget if host_budget is not None else host_budget_bytes()
        self._load = loader or load
        self._slots: OrderedDict[tuple[str, str], _Slot] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, info: ModelInfo) -> LoadedModel:
        """The model, loaded and on the device, now the most recently used."""
        key = (info.id, str(info.path))
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                logger.info("Loading model %s from %s", info.id, info.path)
                loaded = self._load(info, self.device)
                slot = _Slot(loaded, pipeline_bytes(loaded.pipe))
                logger.info(
                    "Model %s takes %s (%s)", info.id, format_bytes(slot.bytes), loaded.fast_path.describe()
                )
                self._slots[key] = slot
            self._slots.move_to_end(key)
            if slot.tier != (GPU if self.has_gpu else HOST):
                try:
                    self._place(key, slot)
                except BaseException:
                    self._unload(key)
                    raise
            return slot.loaded

    def addon(self, info: ModelInfo, key: str, load: Callable[[], Any]) -> Any:
        """A module that runs with the cached model ``info`` (a ControlNet), loaded by ``load`` into host
        memory the first time and kept in the model's slot: on the model's device, its bytes counted with
        the model's (other models make room for it as for a bigger model), moved and unloaded with it. At
        most ``MAX_ADDONS`` per model: the least recently used leave first. Call after ``get(info)``."""
        slot_key = (info.id, str(info.path))
        with self._lock:
            slot = self._slots.get(slot_key)
            if slot is None:
                raise GenerationError(f"The model {info.id} is not loaded.")
            found = slot.addons.get(key)
            if found is None:
                logger.info("Loading %s for model %s", key, info.id)
                module = load()
                size = sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
                while len(slot.addons) >= MAX_ADDONS:
                    old_key, (_old, old_size) = slot.addons.popitem(last=False)
                    slot.bytes -= old_size
                    logger.info("Unloading %s of model %s", old_key, info.id)
                slot.addons[key] = found = (module, size)
                slot.bytes += size
                logger.info("%s takes %s", key, format_bytes(size))
                tier = slot.tier
                try:
                    self._make_room(slot)
                    if tier == GPU:
                        module.to(self.device)
                except BaseException:
                    self._unload(slot_key)
                    raise
            slot.addons.move_to_end(key)
            self._slots.move_to_end(slot_key)
            return found[0]

    def _make_room(self, slot: _Slot) -> None:
        """Keep a slot that just grew within its tier's budget: the other models of its tier move out (to
        host memory, or unloaded) least recently used first."""
        tier, slot.tier = slot.tier, None  # (counted in no tier meanwhile, so it is never the one moved)
        try:
            if tier == GPU:
                on_gpu = [(k, s) for k, s in self._slots.items() if s.tier == GPU]
                used = sum(s.bytes for _, s in on_gpu)
                for k, s in on_gpu:
                    if used + slot.bytes <= self.gpu_budget:
                        break
                    self._to_host(k, s)
                    used -= s.bytes
            elif tier == HOST:
                self._fit_host(slot.bytes)
        finally:
            slot.tier = tier

    def _place(self, key: tuple[str, str], slot: _Slot) -> None:
        """Put a model just loaded, or kept in host memory, where it runs, making room for it."""
        coming_back = slot.tier == HOST
        slot.tier = None  # (counted in no tier while it moves, so that making room never unloads it)
        if not self.has_gpu:
            self._fit_host(slot.bytes)
            slot.tier = HOST
            return
        on_gpu = [(k, s) for k, s in self._slots.items() if s.tier == GPU]
        used = sum(s.bytes for _, s in on_gpu)
        for k, s in on_gpu:  # least recently used first
            if used + slot.bytes <= self.gpu_budget:
                break
            self._to_host(k, s)
            used -= s.bytes
        if coming_back:
            logger.info("Moving model %s back to %s", slot.loaded.info.id, self.device)
        slot.loaded.pipe.to(self.device)  # (in place: the mode pipelines share its modules)
        for module, _size in slot.addons.values():
            module.to(self.device)
        slot.tier = GPU

    def _to_host(self, key: tuple[str, str], slot: _Slot) -> None:
        if slot.bytes > self.host_budget:
            self._unload(key)
            return
        self._fit_host(slot.bytes)
        logger.info("Moving model %s to host memory", slot.loaded.info.id)
        slot.loaded.pipe.to("cpu", silence_dtype_warnings=True)
        for module, _size in slot.addons.values():
            module.to("cpu")
        slot.tier = HOST
        # CUDA graphs recorded for it point at the memory it left: its shapes are warmed again on return.
        slot.loaded.warmed.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _fit_host(self, incoming: int) -> None:
        """Unload the least recently used models in host memory until ``incoming`` more bytes fit there."""
        in_host = [(k, s) for k, s in self._slots.items() if s.tier == HOST]
        used = sum(s.bytes for _, s in in_host)
        for k, s in in_host:
            if used + incoming <= self.host_budget:
                break
            self._unload(k)
            used -= s.bytes

    def _unload(self, key: tuple[str, str]) -> None:
        slot = self._slots.pop(key, None)
        if slot is None:
            return
        logger.info("Unloading model %s", slot.loaded.info.id)
        del slot
        gc.collect()  # (a pipeline and its mode pipelines refer to each other: free them now)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def clear(self) -> None:
        with self._lock:
            for key in list(self._slots):
                self._unload(key)

    def loaded(self) -> list[str]:
        """Ids of the models loaded now, least recently used first."""
        with self._lock:
            return [info_id for info_id, _ in self._slots]

    def tiers(self) -> dict[str, Placement]:
        """Where each loaded model is (``GPU`` or ``HOST``) and its bytes, least recently used first."""
        with self._lock:
            return {
                key[0]: Placement(slot.tier, slot.bytes)
                for key, slot in self._slots.items()
                if slot.tier is not None
            }


def gpu_budget_bytes(device: torch.device) -> int:
    """The GPU memory cached models' weights may take: ``STUDIO_GPU_CACHE_BYTES``, else
    ``STUDIO_GPU_MEMORY_FRACTION`` of the device's memory."""
    if settings.STUDIO_GPU_CACHE_BYTES > 0:
        return int(settings.STUDIO_GPU_CACHE_BYTES)
    total = torch.cuda.get_device_properties(device).total_memory
    return int(total * settings.STUDIO_GPU_MEMORY_FRACTION)


def host_budget_bytes() -> int:
    """The host memory cached models may take: ``STUDIO_HOST_CACHE_BYTES``, else half of
    ``host_memory_bytes()``."""
    if settings.STUDIO_HOST_CACHE_BYTES > 0:
        return int(settings.STUDIO_HOST_CACHE_BYTES)
    return host_memory_bytes() // 2


CGROUP_MEMORY_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def host_memory_bytes() -> int:
    """The machine's memory (``MemTotal`` in /proc/meminfo), or its container's limit (cgroup v2 or v1)
    where that is lower: a container sees the whole machine's MemTotal but is killed past its limit."""
    total = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if not total:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in CGROUP_MEMORY_LIMITS:
        try:
            limit = Path(path).read_text().strip()
        except OSError:
            continue
        if limit.isdigit():  # ("max": none)
            total = min(total, int(limit))
    return total


def format_bytes(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


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
            if loaded.fast_path.channels_last:
                decoder = decoder.to(memory_format=torch.channels_last)
        except Exception:
            logger.exception(
                "Could not load the %s preview decoder; previews use latent factors", info.family
            )
            decoder = None
        kept.update(key=key, decoder=decoder)
    return kept["decoder"]
