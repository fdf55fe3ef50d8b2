"""The model registry: every model folder under ``settings.MODELS_DIR`` is a model, and so are the models
shipped with the studio (``settings.STUDIO_BUNDLED_MODELS``) unless the models dir overrides their id.

A folder is a model when it holds ``model_index.json`` (a diffusers folder), or a ``studio.json`` with
``"format": "single_file"`` beside the one ``.safetensors`` checkpoint it names. ``studio.json`` names the
model and overrides its family's defaults (size, steps, guidance, scheduler, size limits, preview factors,
and how it runs on a GPU: ``fast_path_overrides``).
LoRAs live apart, one folder each under ``MODELS_DIR/_loras/`` (the ``.safetensors`` file and
``lora.json``); ControlNets under ``MODELS_DIR/_controlnets/`` (a diffusers folder: ``config.json``, the
safetensors weights and ``controlnet.json``); a family's tiny preview decoder, where one is installed, in
``MODELS_DIR/_preview/<family>/``.
Plain Python: web processes use it to list models and validate jobs without loading torch;
installing and removing go through ``generation.library``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from .families import (
    CONTROLNET_CLASSES,
    DTYPES,
    FAMILIES,
    MAX_GUIDANCE,
    MAX_STEPS,
    PIPELINE_CLASS_FAMILIES,
    Family,
)

logger = logging.getLogger(__name__)

LORAS_DIR = "_loras"
SINGLE_FILE = "single_file"

WEIGHT_SUFFIXES = (".safetensors", ".json", ".txt", ".model")
UNSAFE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")


@dataclass(frozen=True)
class ModelInfo:
    id: str
    name: str
    family: str
    path: Path
    default_width: int
    default_height: int
    default_steps: int
    default_guidance: float
    default_scheduler: str
    min_size: int
    max_size: int
    schedulers: list[str]
    modes: list[str]
    latent_rgb_factors: list[list[float]] | None = None
    latent_rgb_bias: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # A single-file checkpoint (``path`` is its folder, ``checkpoint`` the file), else a diffusers folder.
    checkpoint: Path | None = None
    # The digest recorded at install (the checkpoint's sha256, or the folder's); None for a hand-made folder.
    sha256: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def flow_matching(self) -> bool:
        return FAMILIES[self.family].flow_matching

    def public(self) -> dict[str, Any]:
        """The shape ``GET /api/v1/models`` answers with."""
        return {
            "id": self.id,
            "name": self.name,
            "family": self.family,
            "default_width": self.default_width,
            "default_height": self.default_height,
            "default_steps": self.default_steps,
            "default_guidance": self.default_guidance,
            "default_scheduler": self.default_scheduler,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "schedulers": self.schedulers,
            "modes": self.modes,
            "features": model_features(self),
            "loras": [lora.public() for lora in list_loras(self.family)],
            "controlnets": [c.public() for c in list_controlnets() if controlnet_misfit(c, self) is None],
        }


@dataclass(frozen=True)
class LoraInfo:
    id: str
    name: str
    family: str
    path: Path  # the .safetensors file
    sha256: str
    size_bytes: int
    meta: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "family": self.family}


class RegistryError(Exception):
    pass


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise RegistryError(f"{path} must hold a JSON object")
    return data


def is_single_file(folder: Path) -> bool:
    meta = folder / "studio.json"
    if (folder / "model_index.json").exists() or not meta.exists():
        return False
    try:
        return json.loads(meta.read_text()).get("format") == SINGLE_FILE
    except (OSError, ValueError, AttributeError):
        return False


def _meta_number(name: str, meta: dict[str, Any], key: str, default: float, kind: type) -> Any:
    value = meta.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RegistryError(f"{name}: {key} in studio.json must be a number, not {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise RegistryError(f"{name}: {key} in studio.json must be a number, not {value!r}") from None


def model_limits(name: str, family: Family, meta: dict[str, Any]) -> dict[str, Any]:
    """Sizes and defaults from a model's metadata, kept inside the site's maxima: the image side at most
    ``STUDIO_MAX_IMAGE_SIZE``, the steps and guidance within what any job may ask for. Metadata may narrow
    the family's limits; where it asks for more, the site's limit holds (and is logged)."""
    site_max = int(settings.STUDIO_MAX_IMAGE_SIZE)
    asked = _meta_number(name, meta, "max_size", family.max_size, int)
    max_size = max(family.size_multiple, min(asked, site_max))
    if asked > max_size:
        logger.warning("%s: max_size %s is above the site's maximum; using %s", name, asked, max_size)
    min_size = min(
        max(_meta_number(name, meta, "min_size", family.min_size, int), family.size_multiple), max_size
    )
    size = _meta_number(name, meta, "default_size", family.default_size, int)

    def side(key: str) -> int:
        return int(min(max(_meta_number(name, meta, key, size, int), min_size), max_size))

    steps = _meta_number(name, meta, "default_steps", family.default_steps, int)
    guidance = _meta_number(name, meta, "default_guidance", family.default_guidance, float)
    return {
        "min_size": min_size,
        "max_size": max_size,
        "default_width": side("default_width"),
        "default_height": side("default_height"),
        "default_steps": min(max(steps, 1), MAX_STEPS),
        "default_guidance": min(max(guidance, 0.0), MAX_GUIDANCE),
    }


# What a model's studio.json may say about how it runs on a GPU (families.FastPath, and torch.compile).
FAST_PATH_FLAGS = ("vae_upcast", "channels_last", "torch_compile")


def fast_path_overrides(name: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The GPU options a model's metadata sets (``dtype``: one of ``DTYPES``; ``vae_upcast``,
    ``channels_last``, ``torch_compile``: true or false), checked; the keys it leaves out are absent."""
    found: dict[str, Any] = {}
    if "dtype" in meta:
        if meta["dtype"] not in DTYPES:
            raise RegistryError(f"{name}: dtype in studio.json must be one of {', '.join(DTYPES)}")
        found["dtype"] = meta["dtype"]
    for key in FAST_PATH_FLAGS:
        if key in meta:
            if not isinstance(meta[key], bool):
                raise RegistryError(f"{name}: {key} in studio.json must be true or false, not {meta[key]!r}")
            found[key] = meta[key]
    return found


def load_model_info(folder: Path, model_id: str | None = None) -> ModelInfo:
    meta = read_json(folder / "studio.json") if (folder / "studio.json").exists() else {}
    checkpoint = None
    if meta.get("format") == SINGLE_FILE:
        name = str(meta.get("file", ""))
        checkpoint = folder / name
        if not name or "/" in name or checkpoint.suffix != ".safetensors" or not checkpoint.is_file():
            raise RegistryError(
                f"{folder.name}: its checkpoint {name!r} is not a .safetensors file beside it"
            )
        family_key = meta.get("family")
    else:
        index = read_json(folder / "model_index.json")
        family_key = meta.get("family") or PIPELINE_CLASS_FAMILIES.get(index.get("_class_name", ""))
        if family_key not in FAMILIES:
            raise RegistryError(f"{folder.name}: unsupported pipeline {index.get('_class_name')!r}")
    if family_key not in FAMILIES:
        raise RegistryError(f"{folder.name}: unknown family {family_key!r}")
    family = FAMILIES[family_key]
    unsafe = [p.name for p in folder.rglob("*") if p.suffix in UNSAFE_SUFFIXES]
    if unsafe:
        raise RegistryError(f"{folder.name}: pickle weights are never loaded ({', '.join(sorted(unsafe))})")
    limits = model_limits(folder.name, family, meta)
    fast_path_overrides(folder.name, meta)
    schedulers = [s for s in meta.get("schedulers", family.schedulers) if s in family.schedulers]
    return ModelInfo(
        id=model_id or folder.name,
        name=str(meta.get("name", folder.name)),
        family=family.key,
        path=folder,
        default_scheduler=str(meta.get("default_scheduler", family.default_scheduler)),
        schedulers=schedulers,
        **limits,
        modes=list(family.modes),
        latent_rgb_factors=meta.get("latent_rgb_factors", family.latent_rgb_factors),
        latent_rgb_bias=meta.get("latent_rgb_bias", family.latent_rgb_bias),
        extra={k: v for k, v in meta.items() if k.startswith("card_")},
        checkpoint=checkpoint,
        sha256=meta.get("sha256") if isinstance(meta.get("sha256"), str) else None,
        meta=meta,
    )


def load_lora_info(folder: Path) -> LoraInfo:
    meta = read_json(folder / "lora.json")
    name = str(meta.get("file", ""))
    path = folder / name
    if not name or "/" in name or path.suffix != ".safetensors" or not path.is_file():
        raise RegistryError(f"LoRA {folder.name}: its file {name!r} is not a .safetensors file beside it")
    if meta.get("family") not in FAMILIES:
        raise RegistryError(f"LoRA {folder.name}: unknown family {meta.get('family')!r}")
    return LoraInfo(
        id=folder.name,
        name=str(meta.get("name", folder.name)),
        family=str(meta["family"]),
        path=path,
        sha256=str(meta.get("sha256", "")),
        size_bytes=int(meta.get("size_bytes", path.stat().st_size)),
        meta=meta,
    )


class Registry:
    """Models from the models dir, plus the models shipped with the studio (``bundled``: id → folder) where
    the models dir has none of that id. Rescans when a folder's metadata changes."""

    def __init__(self, models_dir: Path, bundled: dict[str, Path] | None = None) -> None:
        self.models_dir = models_dir
        self.bundled = bundled or {}
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._models: dict[str, ModelInfo] = {}
        self._lora_stamp: tuple | None = None
        self._loras: dict[str, LoraInfo] = {}

    def _candidates(self) -> list[tuple[str, Path]]:
        found = []
        if self.models_dir.is_dir():
            found = [
                (f.name, f)
                for f in sorted(self.models_dir.iterdir())
                if not f.name.startswith((".", "_"))
                and ((f / "model_index.json").exists() or is_single_file(f))
            ]
        installed = {model_id for model_id, _ in found}
        found += [
            (model_id, folder)
            for model_id, folder in self.bundled.items()
            if model_id not in installed and (folder / "model_index.json").exists()
        ]
        return found

    def loras(self) -> dict[str, LoraInfo]:
        root = self.models_dir / LORAS_DIR
        folders = (
            [f for f in sorted(root.iterdir()) if not f.name.startswith(".") and (f / "lora.json").exists()]
            if root.is_dir()
            else []
        )
        stamp = tuple((f.name, (f / "lora.json").stat().st_mtime_ns) for f in folders)
        with self._lock:
            if stamp != self._lora_stamp:
                found: dict[str, LoraInfo] = {}
                for folder in folders:
                    try:
                        found[folder.name] = load_lora_info(folder)
                    except (RegistryError, OSError, ValueError) as exc:
                        logger.error("Skipping LoRA: %s", exc)
                self._loras, self._lora_stamp = found, stamp
            return self._loras

    def models(self) -> dict[str, ModelInfo]:
        candidates = self._candidates()
        stamp = tuple(
            (model_id, str(p), p.stat().st_mtime_ns)
            for model_id, folder in candidates
            for p in (folder / "model_index.json", folder / "studio.json")
            if p.exists()
        )
        with self._lock:
            if stamp != self._stamp:
                found: dict[str, ModelInfo] = {}
                for model_id, folder in candidates:
                    try:
                        found[model_id] = load_model_info(folder, model_id)
                    except RegistryError as exc:
                        logger.error("Skipping model: %s", exc)
                self._models, self._stamp = found, stamp
            return self._models


_registries: dict[Path, Registry] = {}


def registry() -> Registry:
    path = Path(settings.MODELS_DIR)
    if path not in _registries:
        _registries[path] = Registry(path, {k: Path(v) for k, v in settings.STUDIO_BUNDLED_MODELS.items()})
    return _registries[path]


def list_models() -> list[ModelInfo]:
    return list(registry().models().values())


def get_model(model_id: str) -> ModelInfo | None:
    return registry().models().get(model_id)


def list_loras(family: str | None = None) -> list[LoraInfo]:
    """Installed LoRAs (of one family, when named), by name."""
    found = [lora for lora in registry().loras().values() if family is None or lora.family == family]
    return sorted(found, key=lambda lora: (lora.name.lower(), lora.id))


def get_lora(lora_id: str) -> LoraInfo | None:
    return registry().loras().get(lora_id)


# Families whose denoiser is a UNet: reference attention (engine/reference.py) works in their self-attention.
REFERENCE_FAMILIES = ("demo", "sd1", "sd2", "sdxl")


def model_features(info: ModelInfo) -> list[str]:
    """The controls ``info`` takes beyond its modes (``features`` in ``GET /api/v1/models``): each one its
    family supports and, where it needs weights, whose weights an admin has installed for that family."""
    found: list[str] = []
    if info.family in REGION_FAMILIES:
        found.append("regions")
    if info.family in REFERENCE_FAMILIES:
        found.append("reference")
        if any(ip_adapter_fits(adapter, info) for adapter in list_ip_adapters(info.family)):
            found.append("ip_adapter")
    if FAMILIES[info.family].controlnet and any(
        controlnet_misfit(c, info) is None for c in list_controlnets()
    ):
        found.append("controlnet")
    return found


# The families whose models take regional prompts (generation/engine/regions.py: the UNet families).
REGION_FAMILIES = ("sd1", "sd2", "sdxl", "demo")


def default_model() -> ModelInfo | None:
    models = registry().models()
    return models.get(settings.STUDIO_DEFAULT_MODEL) or next(iter(models.values()), None)


def folder_sha256(folder: Path) -> str:
    """A stable digest of a model folder's files (names and contents), cached beside them."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".studio-"))
    stamp = [(str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    stamp_key = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()
    cache = folder / ".studio-sha256"
    if cache.exists():
        cached_key, _, cached_digest = cache.read_text().partition(" ")
        if cached_key == stamp_key:
            return cached_digest.strip()
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(folder)).encode() + b"\0")
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    result = digest.hexdigest()
    try:
        cache.write_text(f"{stamp_key} {result}\n")
    except OSError:
        pass  # read-only models dir: recompute next time
    return result


# --- preview decoders --

PREVIEW_DIR = "_preview"
PREVIEW_WEIGHTS = "diffusion_pytorch_model.safetensors"


@dataclass(frozen=True)
class PreviewDecoderInfo:
    """A tiny latent decoder (``AutoencoderTiny``) installed for one family's previews, in
    ``MODELS_DIR/_preview/<family>/`` (its ``config.json``, weights and ``decoder.json``)."""

    family: str
    name: str
    path: Path  # the folder
    sha256: str
    size_bytes: int
    meta: dict[str, Any] = field(default_factory=dict)


def get_preview_decoder(family: str) -> PreviewDecoderInfo | None:
    """The preview decoder installed for ``family``, if one is (and it is whole: config and safetensors)."""
    if family not in FAMILIES:
        return None
    folder = Path(settings.MODELS_DIR) / PREVIEW_DIR / family
    try:
        meta = read_json(folder / "decoder.json")
    except RegistryError:
        return None
    weights = folder / PREVIEW_WEIGHTS
    if meta.get("family") != family or not (folder / "config.json").is_file() or not weights.is_file():
        logger.error("Ignoring the incomplete preview decoder in %s", folder)
        return None
    return PreviewDecoderInfo(
        family=family,
        name=str(meta.get("name", family)),
        path=folder,
        sha256=str(meta.get("sha256", "")),
        size_bytes=int(meta.get("size_bytes", weights.stat().st_size)),
        meta=meta,
    )


def list_preview_decoders() -> list[PreviewDecoderInfo]:
    found = (get_preview_decoder(family) for family in FAMILIES)
    return [decoder for decoder in found if decoder is not None]


# --- add-ons installed one folder each (annotators, IP-Adapters, ControlNets) --

_folder_cache: dict[tuple[Path, str], tuple[tuple, dict[str, Any]]] = {}
_folder_lock = threading.Lock()


def installed_folders(subdir: str, meta_name: str, load: Callable[[Path], Any], what: str) -> dict[str, Any]:
    """The add-ons installed under ``MODELS_DIR/<subdir>/``, one folder each holding ``meta_name``, by id
    (the folder's name), as ``load`` reads them. Read once, and again when a folder comes, goes or has its
    metadata rewritten (the models list asks for every model). A folder that does not load is logged and
    left out."""
    root = Path(settings.MODELS_DIR) / subdir
    folders = (
        [f for f in sorted(root.iterdir()) if not f.name.startswith(".") and (f / meta_name).is_file()]
        if root.is_dir()
        else []
    )
    stamp = tuple((f.name, (f / meta_name).stat().st_mtime_ns) for f in folders)
    with _folder_lock:
        cached = _folder_cache.get((root, meta_name))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        found: dict[str, Any] = {}
        for folder in folders:
            try:
                found[folder.name] = load(folder)
            except (RegistryError, OSError, ValueError) as exc:
                logger.error("Skipping %s: %s", what, exc)
        _folder_cache[(root, meta_name)] = (stamp, found)
        return found


# --- ControlNet annotators --

ANNOTATORS_DIR = "_annotators"
ANNOTATOR_META = "annotator.json"
# What each kind of annotator draws, and the transformers model types that draw it.
ANNOTATOR_KINDS = {"depth": "Depth", "pose": "Pose"}
ANNOTATOR_MODEL_TYPES = {"dpt": "depth", "depth_anything": "depth", "vitpose": "pose"}


@dataclass(frozen=True)
class AnnotatorInfo:
    """A model that turns a reference image into a ControlNet's control map (a depth map, a pose skeleton),
    installed in ``MODELS_DIR/_annotators/<id>/``: a transformers folder (``config.json``, safetensors
    weights, ``preprocessor_config.json`` where the model has one) and ``annotator.json``."""

    id: str
    name: str
    kind: str  # a key of ANNOTATOR_KINDS
    path: Path  # the folder
    sha256: str
    meta: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "model_type": str(self.meta.get("model_type", "")),
            "sha256": self.sha256,
            "size_bytes": int(self.meta.get("size_bytes", 0)),
            "installed_at": str(self.meta.get("installed_at", "")),
            "installed_by": str(self.meta.get("installed_by", "")),
        }


def load_annotator_info(folder: Path) -> AnnotatorInfo:
    meta = read_json(folder / ANNOTATOR_META)
    kind = meta.get("kind")
    if kind not in ANNOTATOR_KINDS or ANNOTATOR_MODEL_TYPES.get(meta.get("model_type", "")) != kind:
        raise RegistryError(f"Annotator {folder.name}: unknown kind {kind!r}")
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        raise RegistryError(f"Annotator {folder.name}: its config.json or safetensors weights are missing")
    unsafe = [p.name for p in folder.iterdir() if p.suffix in UNSAFE_SUFFIXES]
    if unsafe:
        raise RegistryError(
            f"Annotator {folder.name}: pickle weights are never loaded ({', '.join(sorted(unsafe))})"
        )
    return AnnotatorInfo(
        id=folder.name,
        name=str(meta.get("name", folder.name)),
        kind=str(kind),
        path=folder,
        sha256=str(meta.get("sha256", "")),
        meta=meta,
    )


# --- IP-Adapters --

IP_ADAPTERS_DIR = "_ip_adapters"
IP_ADAPTER_WEIGHTS = "ip_adapter.safetensors"
IP_ADAPTER_ENCODER = "image_encoder"


@dataclass(frozen=True)
class IpAdapterInfo:
    """An installed IP-Adapter, in ``MODELS_DIR/_ip_adapters/<id>/``: its weights (``ip_adapter.safetensors``,
    keys ``image_proj.*`` and ``ip_adapter.*``), its ``image_encoder/`` (a CLIPVisionModelWithProjection
    folder) and ``ip_adapter.json`` (name, family, sha256s, the cross-attention width it was made for)."""

    id: str
    name: str
    family: str
    path: Path  # the folder
    sha256: str
    size_bytes: int
    cross_attention_dim: int
    meta: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "family": self.family}


def load_ip_adapter_info(folder: Path) -> IpAdapterInfo:
    meta = read_json(folder / "ip_adapter.json")
    weights = folder / IP_ADAPTER_WEIGHTS
    encoder = folder / IP_ADAPTER_ENCODER
    if not weights.is_file() or not (encoder / "config.json").is_file():
        raise RegistryError(f"IP-Adapter {folder.name}: its weights or image encoder are missing")
    if meta.get("family") not in FAMILIES:
        raise RegistryError(f"IP-Adapter {folder.name}: unknown family {meta.get('family')!r}")
    return IpAdapterInfo(
        id=folder.name,
        name=str(meta.get("name", folder.name)),
        family=str(meta["family"]),
        path=folder,
        sha256=str(meta.get("sha256", "")),
        size_bytes=int(meta.get("size_bytes", weights.stat().st_size)),
        cross_attention_dim=int(meta.get("cross_attention_dim", 0)),
        meta=meta,
    )


def list_annotators(kind: str | None = None) -> list[AnnotatorInfo]:
    """Installed annotators (of one kind, when named), by name. A folder that is not a whole annotator is
    logged and left out."""
    found = installed_folders(ANNOTATORS_DIR, ANNOTATOR_META, load_annotator_info, "annotator").values()
    return sorted((a for a in found if kind is None or a.kind == kind), key=lambda a: (a.name.lower(), a.id))


def get_annotator(annotator_id: str) -> AnnotatorInfo | None:
    return next((a for a in list_annotators() if a.id == annotator_id), None)


def annotator_for(kind: str) -> AnnotatorInfo | None:
    """The annotator a ControlNet's ``kind`` preprocessor ("depth", "pose") runs: the most recently installed
    one of that kind (an admin who installs a better model gets it used at once, and removing it brings back
    the previous one); None when none is installed."""
    candidates = list_annotators(kind)
    if not candidates:
        return None
    return max(candidates, key=lambda a: (str(a.meta.get("installed_at", "")), a.id))


def list_ip_adapters(family: str | None = None) -> list[IpAdapterInfo]:
    """Installed IP-Adapters (of one family, when named), by name. A broken folder is logged and skipped."""
    found = installed_folders(IP_ADAPTERS_DIR, "ip_adapter.json", load_ip_adapter_info, "IP-Adapter").values()
    return sorted(
        (a for a in found if family is None or a.family == family), key=lambda a: (a.name.lower(), a.id)
    )


def get_ip_adapter(adapter_id: str) -> IpAdapterInfo | None:
    return next((a for a in list_ip_adapters() if a.id == adapter_id), None)


def unet_cross_attention_dim(info: ModelInfo) -> int | None:
    """The width of the text a diffusers folder's UNet reads (its ``unet/config.json``), or None where it
    cannot be read (a single-file checkpoint: its family says it)."""
    config = info.path / "unet" / "config.json"
    if info.checkpoint is not None or not config.is_file():
        return None
    try:
        value = read_json(config).get("cross_attention_dim")
    except RegistryError:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def ip_adapter_fits(adapter: IpAdapterInfo, info: ModelInfo) -> bool:
    """Whether an IP-Adapter's weights fit a model: the same family and, where the model's UNet config
    says, the same cross-attention width."""
    if adapter.family != info.family:
        return False
    width = unet_cross_attention_dim(info)
    return width is None or not adapter.cross_attention_dim or width == adapter.cross_attention_dim


# --- ControlNets --

CONTROLNETS_DIR = "_controlnets"
CONTROLNET_META = "controlnet.json"
CONTROLNET_WEIGHTS = "diffusion_pytorch_model.safetensors"


@dataclass(frozen=True)
class ControlNetInfo:
    """A ControlNet installed in ``MODELS_DIR/_controlnets/<id>/``: a diffusers ``ControlNetModel`` (or
    ``FluxControlNetModel``) folder, ``config.json`` and its safetensors weights, and ``controlnet.json``
    (name, family, sha256, who installed it)."""

    id: str
    name: str
    family: str
    path: Path  # the folder
    sha256: str
    size_bytes: int
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "family": self.family}


def load_controlnet_info(folder: Path) -> ControlNetInfo:
    meta = read_json(folder / CONTROLNET_META)
    config = read_json(folder / "config.json")
    weights = folder / CONTROLNET_WEIGHTS
    family = meta.get("family")
    if family not in CONTROLNET_CLASSES.get(str(config.get("_class_name")), ()):
        raise RegistryError(f"ControlNet {folder.name}: {config.get('_class_name')!r} is not for {family!r}")
    if not weights.is_file():
        raise RegistryError(f"ControlNet {folder.name}: its {CONTROLNET_WEIGHTS} is missing")
    unsafe = [p.name for p in folder.iterdir() if p.suffix in UNSAFE_SUFFIXES]
    if unsafe:
        raise RegistryError(
            f"ControlNet {folder.name}: pickle weights are never loaded ({', '.join(sorted(unsafe))})"
        )
    return ControlNetInfo(
        id=folder.name,
        name=str(meta.get("name", folder.name)),
        family=str(family),
        path=folder,
        sha256=str(meta.get("sha256", "")),
        size_bytes=int(meta.get("size_bytes", weights.stat().st_size)),
        config=config,
        meta=meta,
    )


def _controlnets() -> dict[str, ControlNetInfo]:
    return installed_folders(CONTROLNETS_DIR, CONTROLNET_META, load_controlnet_info, "ControlNet")


def list_controlnets(family: str | None = None) -> list[ControlNetInfo]:
    """Installed ControlNets (of one family, when named), by name."""
    found = [c for c in _controlnets().values() if family is None or c.family == family]
    return sorted(found, key=lambda c: (c.name.lower(), c.id))


def get_controlnet(controlnet_id: str) -> ControlNetInfo | None:
    return _controlnets().get(controlnet_id)


# What must be equal between a ControlNet and the UNet it steers: the residuals it adds to each down block
# and the middle block have the UNet's widths and count, and it reads the same text and added embeddings.
UNET_FIT = (
    "in_channels",
    "block_out_channels",
    "layers_per_block",
    "cross_attention_dim",
    "addition_embed_type",
    "addition_time_embed_dim",
    "projection_class_embeddings_input_dim",
)
# The same for FLUX's transformer: the latent patches it reads and the widths it adds its residuals at.
TRANSFORMER_FIT = (
    "in_channels",
    "patch_size",
    "attention_head_dim",
    "num_attention_heads",
    "joint_attention_dim",
    "pooled_projection_dim",
)


_component_configs: dict[tuple[str, int], dict[str, Any] | None] = {}


def component_config(model: ModelInfo, component: str) -> dict[str, Any] | None:
    """A component's config.json of a model (a diffusers folder's own; a single file's shipped one), or None
    when there is none to read. Read once per version of the file (the models list asks for every model)."""
    shipped = Path(__file__).resolve().parent / "configs" / model.family
    path = (model.path if model.checkpoint is None else shipped) / component / "config.json"
    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError:
        return None
    if key not in _component_configs:
        try:
            _component_configs[key] = read_json(path)
        except RegistryError:
            _component_configs[key] = None
    return _component_configs[key]


def controlnet_misfit(controlnet: ControlNetInfo, model: ModelInfo) -> str | None:
    """Why ``controlnet`` cannot steer ``model``, in a sentence; None when it can: the same family (one that
    takes ControlNets) and, since a folder can be made by hand, the same denoiser dimensions and the same
    scale between image and latents."""
    family = FAMILIES[model.family]
    if not family.controlnet:
        return f"{model.name} ({family.label}) takes no ControlNets."
    if controlnet.family != model.family:
        return f"{controlnet.name} is for {FAMILIES[controlnet.family].label} models, not {model.name}."
    denoiser = component_config(model, "transformer" if model.family == "flux" else "unet")
    if denoiser is None:
        return None  # nothing to compare with: its family is all that can be checked
    keys = TRANSFORMER_FIT if model.family == "flux" else UNET_FIT
    differ = [k for k in keys if _normal(controlnet.config.get(k)) != _normal(denoiser.get(k))]
    if differ:
        return (
            f"{controlnet.name} was made for a different {family.label} network than {model.name} (its "
            f"{', '.join(differ)} differ)."
        )
    if model.family != "flux":
        vae = component_config(model, "vae") or {}
        levels = len(vae.get("block_out_channels") or [0] * 4)
        steps = len(controlnet.config.get("conditioning_embedding_out_channels") or [0] * 4)
        if levels != steps:
            return (
                f"{controlnet.name} reads its control image at 1/{2 ** (steps - 1)} of the image's size, but "
                f"{model.name}'s latents are 1/{2 ** (levels - 1)} of it."
            )
    return None


def _normal(value: Any) -> Any:
    """A config value as compared: lists and tuples alike, an integer width as the same for every block."""
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    return value
