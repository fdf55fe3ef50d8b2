"""Installing and removing models, LoRAs, ControlNets, IP-Adapters, tiny preview decoders and ControlNet
annotators: the writes behind ``manage.py install_model`` and the admin's Models page.

Everything is checked before anything is written: a file whose header is not safetensors is refused whatever
its name (pickle checkpoints are never opened beyond their first bytes, let alone unpickled), and every
tensor's place in the file is checked against the file's size, so a truncated or corrupt file fails here and
not in a later job. Installing copies into a hidden folder inside the models dir and renames it into place, so
the registry (and the workers reading it) never see half a model. Plain Python: no torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import struct
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from studio import audit
from studio.errors import InvalidInput, NotFound

from .engine import registry
from .engine.families import CONTROLNET_CLASSES, FAMILIES, PIPELINE_CLASS_FAMILIES, SINGLE_FILE_REFUSALS

# Bytes per element of each safetensors dtype.
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
MAX_HEADER_BYTES = 100 * 1024 * 1024
# Files of a diffusers folder that are copied: weights (safetensors only), configs, tokenizer files.
COPIED_SUFFIXES = (".safetensors", ".json", ".txt", ".model")


class NotSafetensors(InvalidInput):
    pass


# --- safetensors, read without loading --


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The file's tensor table (name → dtype, shape, data_offsets), checked against the file's size.

    Raises NotSafetensors when the file is not safetensors (a pickle, a zip, anything) or is truncated or
    inconsistent. Only the header is read."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        start = fh.read(8)
        if len(start) < 8:
            raise NotSafetensors(_not_safetensors(path, "it is too short"))
        (header_len,) = struct.unpack("<Q", start)
        if header_len > min(size - 8, MAX_HEADER_BYTES):
            raise NotSafetensors(_not_safetensors(path, "its header is not a safetensors header"))
        raw = fh.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # nesting deep enough to exhaust the stack
        raise NotSafetensors(_not_safetensors(path, "its header is not safetensors JSON")) from None
    if not isinstance(header, dict):
        raise NotSafetensors(_not_safetensors(path, "its header is not safetensors JSON"))
    data_size = size - 8 - header_len
    end_of_data = 0
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if not tensors:
        raise NotSafetensors(f"{path.name} holds no tensors.")
    for name, info in tensors.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            valid = (
                dtype in DTYPE_SIZES
                and isinstance(shape, list)
                and all(isinstance(d, int) and d >= 0 for d in shape)
                and isinstance(begin, int)
                and isinstance(end, int)
            )
        except (KeyError, TypeError, ValueError):
            valid = False
        if not valid:
            raise NotSafetensors(f"{path.name} is corrupt: the entry for tensor {name!r} is malformed.")
        if end - begin != math.prod(shape) * DTYPE_SIZES[dtype] or begin < 0:
            raise NotSafetensors(f"{path.name} is corrupt: tensor {name!r} has the wrong number of bytes.")
        if end > data_size:
            raise NotSafetensors(
                f"{path.name} is truncated or corrupt: tensor {name!r} ends at byte {end:,} of the data, "
                f"but the file holds only {data_size:,}."
            )
        end_of_data = max(end_of_data, end)
    if end_of_data != data_size:
        raise NotSafetensors(
            f"{path.name} is corrupt: {data_size - end_of_data:,} bytes follow its last tensor."
        )
    return tensors


def _not_safetensors(path: Path, why: str) -> str:
    return (
        f"{path.name} is not a safetensors file ({why}). Pickle checkpoints (.ckpt, .pt, .bin) are never "
        "loaded, whatever their name: convert the model to safetensors first."
    )


# --- what a checkpoint is --


def _find(keys: set[str], suffix: str) -> str | None:
    return next((k for k in keys if k.endswith(suffix)), None)


def _shape(header: dict[str, Any], name: str, dims: int) -> list[int]:
    """The shape of tensor ``name``, which must have ``dims`` dimensions; InvalidInput otherwise (a damaged
    or hand-made file, not a model the studio runs)."""
    shape = list(header[name]["shape"])
    if len(shape) != dims:
        raise InvalidInput(
            f"The tensor {name!r} has the shape {shape}, where a {dims}-dimensional shape belongs: the "
            "file is damaged, or not a model the studio runs."
        )
    return shape


def detect_checkpoint_family(header: dict[str, Any]) -> str:
    """The family of a single-file checkpoint, from its tensor names (and one shape); InvalidInput when it is
    not a text-to-image checkpoint of a family the studio runs, or lacks parts it needs."""
    keys = set(header)
    if _find(keys, "double_blocks.0.img_attn.qkv.weight"):
        return "flux"
    if _find(keys, "joint_blocks.0.context_block.attn.qkv.weight"):
        return "sd3"
    conv_in_name = "model.diffusion_model.input_blocks.0.0.weight"
    if conv_in_name not in header:
        raise InvalidInput(
            "This file is not a Stable Diffusion, SDXL, SD3 or FLUX checkpoint (it has no diffusion model "
            "weights); a LoRA is installed as a LoRA."
        )
    if _shape(header, conv_in_name, 4)[1] != 4:
        raise InvalidInput(
            "Inpainting and other special-purpose checkpoints are not supported; use a base model."
        )
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(k.startswith("conditioner.embedders.0.model.") for k in keys):
        raise InvalidInput("The SDXL refiner is not a text-to-image model; install an SDXL base checkpoint.")
    to_k = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    if to_k in header and _shape(header, to_k, 2)[-1] == 1024:
        return "sd2"
    return "sd1"


# Prefixes of the parts a family's single-file checkpoint must hold (the studio has no other copy of them).
REQUIRED_PARTS = {
    "sd1": {
        "model.diffusion_model.": "UNet",
        "first_stage_model.": "VAE",
        "cond_stage_model.": "text encoder",
    },
    "sd2": {
        "model.diffusion_model.": "UNet",
        "first_stage_model.": "VAE",
        "cond_stage_model.": "text encoder",
    },
    "sdxl": {
        "model.diffusion_model.": "UNet",
        "first_stage_model.": "VAE",
        "conditioner.embedders.0.": "CLIP-L text encoder",
        "conditioner.embedders.1.": "OpenCLIP-G text encoder",
    },
    "sd3": {
        "model.diffusion_model.": "MMDiT",
        "first_stage_model.": "VAE",
        "text_encoders.clip_l.": "CLIP-L text encoder",
        "text_encoders.clip_g.": "CLIP-G text encoder",
    },
}
SD3_MEDIUM_LAYERS = 24


def check_single_file(header: dict[str, Any], family: str) -> None:
    if family in SINGLE_FILE_REFUSALS or not FAMILIES[family].single_file:
        raise InvalidInput(
            SINGLE_FILE_REFUSALS.get(family, f"{family} single-file checkpoints are not supported.")
        )
    missing = [
        part
        for prefix, part in REQUIRED_PARTS[family].items()
        if not any(k.startswith(prefix) for k in header)
    ]
    if missing:
        raise InvalidInput(
            f"This {FAMILIES[family].label} checkpoint lacks its {' and '.join(missing)}; install a "
            "checkpoint that includes them, or the model's diffusers folder."
        )
    if family == "sd3":
        layers = {k.split(".")[3] for k in header if k.startswith("model.diffusion_model.joint_blocks.")}
        dual = any(".x_block.attn2." in k for k in header)
        if len(layers) != SD3_MEDIUM_LAYERS or dual:
            raise InvalidInput(
                "Only SD3 Medium single-file checkpoints are supported; install SD3.5 models as diffusers "
                "folders."
            )


def detect_folder_family(folder: Path) -> str:
    index = _json_file(folder / "model_index.json")
    class_name = index.get("_class_name", "")
    family = PIPELINE_CLASS_FAMILIES.get(class_name)
    if family is None:
        raise InvalidInput(
            f"Unsupported pipeline {class_name!r}: the studio runs {', '.join(PIPELINE_CLASS_FAMILIES)}."
        )
    if family == "sd1":
        text = (
            _json_file(folder / "text_encoder" / "config.json") if (folder / "text_encoder").is_dir() else {}
        )
        scheduler_file = folder / "scheduler" / "scheduler_config.json"
        scheduler = _json_file(scheduler_file) if scheduler_file.exists() else {}
        if text.get("hidden_size") == 1024 or scheduler.get("prediction_type") == "v_prediction":
            family = "sd2"
    return family


def _json_file(path: Path) -> dict[str, Any]:
    """The registry's JSON reading, its failure told as the install's error."""
    try:
        return registry.read_json(path)
    except registry.RegistryError as exc:
        raise InvalidInput(f"{exc}.") from exc


def detect_lora_family(header: dict[str, Any]) -> str | None:
    """A LoRA's family where its tensors tell (the text width its cross-attention reads, or the transformer's
    block names); None when they do not."""
    keys = set(header)
    if any("single_transformer_blocks" in k or "double_blocks" in k or "single_blocks" in k for k in keys):
        return "flux"
    if any("joint_blocks" in k or "add_q_proj" in k for k in keys):
        return "sd3"
    for key in keys:
        if "attn2" in key and ("to_k" in key) and any(d in key for d in ("lora_down", "lora_A", "lora.down")):
            width = _shape(header, key, 2)[-1]
            return {768: "sd1", 1024: "sd2", 2048: "sdxl"}.get(width)
    return None


# --- installing --


@dataclass(frozen=True)
class Installed:
    id: str
    name: str
    family: str
    sha256: str
    size_bytes: int
    path: Path


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60].strip("-")
    return slug


def _source(path_text: str) -> Path:
    if not isinstance(path_text, str) or not path_text.strip():
        raise InvalidInput("Enter a path on the server.", {"path": ["Enter a path on the server."]})
    try:
        path = Path(path_text.strip()).expanduser()
    except RuntimeError:  # "~name" of no such user
        path = Path(path_text.strip())
    if not path.is_absolute():
        raise InvalidInput("Enter an absolute path.", {"path": ["Enter an absolute path on the server."]})
    try:
        exists = path.exists()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        message = "This is not a path the server can read."
        raise InvalidInput(message, {"path": [message]}) from None
    if not exists:
        raise InvalidInput(f"{path} does not exist.", {"path": ["No such file or folder on the server."]})
    return path.resolve()


def _field(exc: InvalidInput, field: str = "path") -> InvalidInput:
    """The same error, attached to a form field (for the admin page)."""
    return InvalidInput(exc.message, exc.errors or {field: [exc.message]})


def _new_id(name: str, taken: set[str], field: str = "name") -> str:
    model_id = _slug(name)
    if not model_id:
        raise InvalidInput(
            "Enter a name with letters or digits.", {field: ["Enter a name with letters or digits."]}
        )
    if model_id in taken:
        message = (
            f"A model, LoRA or ControlNet with the id {model_id!r} is already installed; choose another name."
        )
        raise InvalidInput(message, {field: [message]})
    return model_id


def _taken_ids() -> set[str]:
    """The ids of everything installed that a job names by id: models, LoRAs and ControlNets share one
    namespace, so an id never means two things."""
    return (
        {m.id for m in registry.list_models()}
        | {lora.id for lora in registry.list_loras()}
        | {c.id for c in registry.list_controlnets()}
    )


def _copy_with_sha256(source: Path, target: Path) -> str:
    digest = hashlib.sha256()
    with source.open("rb") as src, target.open("wb") as dst:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            digest.update(chunk)
            dst.write(chunk)
    return digest.hexdigest()


@contextmanager
def _staged(root: Path) -> Iterator[Path]:
    """A hidden folder inside ``root`` to copy an install into; the caller renames it into place. Removed
    again if anything fails, so neither the registry nor a worker ever sees half an install."""
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".installing-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _provenance(actor: Any, source: Path, name: str, family: str, sha256: str, size: int) -> dict[str, Any]:
    """What every install records about itself beside its files."""
    return {
        "name": name,
        "family": family,
        "sha256": sha256,
        "size_bytes": size,
        "source": str(source),
        "installed_at": timezone.now().isoformat(),
        "installed_by": _who(actor),
    }


def _defaults(family: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The defaults an install records, within the site's limits (``registry.model_limits``)."""
    fam = FAMILIES[family]
    try:
        limits = registry.model_limits("studio.json", fam, meta)
        registry.fast_path_overrides("studio.json", meta)
    except registry.RegistryError as exc:
        raise InvalidInput(f"{exc}.", {"path": [f"{exc}."]}) from None
    keys = ("default_width", "default_height", "default_steps", "default_guidance")
    return {
        **{key: limits[key] for key in keys},
        "default_scheduler": str(meta.get("default_scheduler", fam.default_scheduler)),
    }


def _who(actor: Any) -> str:
    return (
        actor.get_username() if actor is not None and getattr(actor, "is_authenticated", False) else "system"
    )


def check_model_source(path_text: str) -> tuple[Path, str, dict[str, Any]]:
    """Validate what would be installed: (source path, family, studio.json carried by a folder)."""
    source = _source(path_text)
    try:
        if source.is_file():
            if source.suffix.lower() in registry.UNSAFE_SUFFIXES:
                raise NotSafetensors(_not_safetensors(source, f"{source.suffix} is a pickle format"))
            header = read_safetensors_header(source)
            family = detect_checkpoint_family(header)
            check_single_file(header, family)
            return source, family, {}
        _refuse_symlinks(source)
        if not (source / "model_index.json").is_file():
            raise InvalidInput(
                f"{source} is neither a .safetensors checkpoint nor a diffusers folder (no model_index.json)."
            )
        family = detect_folder_family(source)
        carried = _json_file(source / "studio.json") if (source / "studio.json").is_file() else {}
        if carried.get("family") in FAMILIES:
            family = str(carried["family"])
        _check_folder_weights(source)
        return source, family, carried
    except InvalidInput as exc:
        raise _field(exc) from None


def _refuse_symlinks(source: Path) -> None:
    """A folder to install must hold its own files: a symbolic link inside it could copy any file of the
    server into the models dir (and from there into every worker)."""
    for root, dirs, files in os.walk(source, followlinks=False):
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink():
                relative = path.relative_to(source)
                raise InvalidInput(
                    f"{relative} in {source.name} is a symbolic link; folders with symbolic links are "
                    "refused (they could copy files from elsewhere on the server). Copy the folder with its "
                    "links resolved (cp -rL) and install the copy."
                )


def _folder_files(source: Path) -> list[Path]:
    return sorted(
        p
        for p in source.rglob("*")
        if p.is_file()
        and p.suffix in COPIED_SUFFIXES
        and p.name != "studio.json"
        and not any(part.startswith(".") for part in p.relative_to(source).parts)
    )


def _check_folder_weights(source: Path) -> None:
    """Every safetensors file is sound, and every model component has safetensors weights (folders often
    carry pickle copies too; those are left behind, never read)."""
    for path in _folder_files(source):
        if path.suffix == ".safetensors":
            read_safetensors_header(path)
    index = _json_file(source / "model_index.json")
    for component, spec in index.items():
        folder = source / component
        if component.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        if (folder / "config.json").is_file() and not any(folder.glob("*.safetensors")):
            raise InvalidInput(
                f"{component}/ has no .safetensors weights; pickle weights are never loaded: convert it "
                "first."
            )


def do_install_model(
    actor: Any,
    path_text: str,
    *,
    name: str = "",
    ip: str | None = None,
    defaults: dict[str, Any] | None = None,
) -> Installed:
    """Validate a diffusers folder or a single-file ``.safetensors`` checkpoint at ``path_text`` (a path on
    the server) and install it as ``MODELS_DIR/<id>/``; the id comes from the name. Audited."""
    source, family, carried = check_model_source(path_text)
    name = (
        (name or "").strip()
        or str(carried.get("name") or "")
        or (source.stem if source.is_file() else source.name)
    )
    models_dir = Path(settings.MODELS_DIR)
    taken = _taken_ids() | ({p.name for p in models_dir.iterdir()} if models_dir.is_dir() else set())
    model_id = _new_id(name, taken)
    with _staged(models_dir) as staging:
        meta: dict[str, Any] = {
            k: v for k, v in carried.items() if k not in ("sha256", "size_bytes", "source")
        }
        if source.is_file():
            file_name = f"{model_id}.safetensors"
            sha256 = _copy_with_sha256(source, staging / file_name)
            size = (staging / file_name).stat().st_size
            meta.update(format=registry.SINGLE_FILE, file=file_name)
        else:
            for path in _folder_files(source):
                target = staging / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            sha256 = registry.folder_sha256(staging)
            (staging / ".studio-sha256").unlink(missing_ok=True)
            size = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
            meta["format"] = "diffusers"
        meta.update(
            _provenance(actor, source, name, family, sha256, size),
            **_defaults(family, {**carried, **(defaults or {})}),
        )
        (staging / "studio.json").write_text(json.dumps(meta, indent=2) + "\n")
        staging.rename(models_dir / model_id)
    audit.record(
        actor,
        audit.MODEL_INSTALL,
        target=f"model:{model_id}",
        ip=ip,
        details={"name": name, "family": family, "sha256": sha256, "size_bytes": size},
    )
    return Installed(model_id, name, family, sha256, size, models_dir / model_id)


def do_install_lora(
    actor: Any, path_text: str, *, name: str = "", family: str = "", ip: str | None = None
) -> Installed:
    """Validate a LoRA (``.safetensors``) and install it under ``MODELS_DIR/_loras/<id>/``, attached to a
    family: the one its tensors show, else the one given. Audited."""
    try:
        source = _source(path_text)
        if not source.is_file():
            raise InvalidInput("A LoRA is one .safetensors file; this is a folder.")
        if source.suffix.lower() in registry.UNSAFE_SUFFIXES:
            raise NotSafetensors(_not_safetensors(source, f"{source.suffix} is a pickle format"))
        header = read_safetensors_header(source)
    except InvalidInput as exc:
        raise _field(exc) from None
    detected = detect_lora_family(header)
    family = (family or "").strip()
    if family and family not in FAMILIES:
        raise InvalidInput("Unknown family.", {"family": [f"Choose one of: {', '.join(FAMILIES)}."]})
    if detected and family and detected != family:
        message = f"This LoRA is for {FAMILIES[detected].label} models, not {FAMILIES[family].label}."
        raise InvalidInput(message, {"family": [message]})
    family = family or detected or ""
    if not family:
        message = "Its tensors do not tell which family this LoRA is for: choose the family."
        raise InvalidInput(message, {"family": [message]})
    if any(k.startswith(("model.diffusion_model.", "first_stage_model.")) for k in header):
        message = "This is a full checkpoint, not a LoRA: install it as a model."
        raise InvalidInput(message, {"path": [message]})
    name = (name or "").strip() or source.stem
    models_dir = Path(settings.MODELS_DIR)
    root = models_dir / registry.LORAS_DIR
    taken = _taken_ids() | ({p.name for p in root.iterdir()} if root.is_dir() else set())
    lora_id = _new_id(name, taken)
    with _staged(root) as staging:
        file_name = f"{lora_id}.safetensors"
        sha256 = _copy_with_sha256(source, staging / file_name)
        size = (staging / file_name).stat().st_size
        meta = {**_provenance(actor, source, name, family, sha256, size), "file": file_name}
        (staging / "lora.json").write_text(json.dumps(meta, indent=2) + "\n")
        staging.rename(root / lora_id)
    audit.record(
        actor,
        audit.MODEL_INSTALL,
        target=f"lora:{lora_id}",
        ip=ip,
        details={"name": name, "family": family, "sha256": sha256, "size_bytes": size},
    )
    return Installed(lora_id, name, family, sha256, size, root / lora_id)


def do_remove(actor: Any, kind: str, item_id: str, *, ip: str | None = None) -> None:
    """Remove an installed model (``kind`` "model"), LoRA ("lora"), ControlNet ("controlnet"), IP-Adapter
    ("ip_adapter"), a family's preview decoder ("preview", ``item_id`` the family) or a ControlNet annotator
    ("annotator") from the models dir. Models shipped with the studio are not in the models dir and cannot be
    removed. Audited."""
    models_dir = Path(settings.MODELS_DIR)
    if kind == "model":
        model = registry.get_model(item_id)
        if model is None or model.path.parent != models_dir:
            raise NotFound("No such installed model.")
        folder, details = model.path, {"name": model.name, "family": model.family}
    elif kind == "lora":
        lora = registry.get_lora(item_id)
        if lora is None:
            raise NotFound("No such installed LoRA.")
        folder, details = lora.path.parent, {"name": lora.name, "family": lora.family}
    elif kind == "ip_adapter":
        adapter = registry.get_ip_adapter(item_id)
        if adapter is None:
            raise NotFound("No such installed IP-Adapter.")
        folder, details = adapter.path, {"name": adapter.name, "family": adapter.family}
    elif kind == "controlnet":
        controlnet = registry.get_controlnet(item_id)
        if controlnet is None:
            raise NotFound("No such installed ControlNet.")
        folder, details = controlnet.path, {"name": controlnet.name, "family": controlnet.family}
    elif kind == "preview":
        decoder = registry.get_preview_decoder(item_id)
        if decoder is None:
            raise NotFound("No preview decoder is installed for that family.")
        folder, details = decoder.path, {"name": decoder.name, "family": decoder.family}
    elif kind == "annotator":
        annotator = registry.get_annotator(item_id)
        if annotator is None:
            raise NotFound("No such installed annotator.")
        folder, details = annotator.path, {"name": annotator.name, "kind": annotator.kind}
    else:
        raise NotFound("Nothing of that kind is installed.")
    # Rename first, so the registry stops listing it at once even if deleting the files takes a while.
    trash = folder.parent / f".removing-{uuid.uuid4().hex}"
    folder.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)
    audit.record(actor, audit.MODEL_REMOVE, target=f"{kind}:{item_id}", ip=ip, details=details)


# --- preview decoders --

# Channels of each family's latents (a preview decoder must read exactly these).
LATENT_CHANNELS = {"demo": 4, "sd1": 4, "sd2": 4, "sdxl": 4, "sd3": 16, "flux": 16}
PREVIEW_DECODER_CLASS = "AutoencoderTiny"


def check_preview_decoder_source(path_text: str, family: str) -> tuple[Path, dict[str, Any]]:
    """Validate a tiny preview decoder for ``family``: a diffusers ``AutoencoderTiny`` folder (``config.json``
    and safetensors weights) whose decoder reads the family's latent channels. Returns (folder, config)."""
    if family not in FAMILIES:
        message = f"Choose the family it decodes: one of {', '.join(FAMILIES)}."
        raise InvalidInput(message, {"family": [message]})
    try:
        source = _source(path_text)
        if source.is_dir():
            _refuse_symlinks(source)
        if not source.is_dir() or not (source / "config.json").is_file():
            raise InvalidInput(
                "A preview decoder is a diffusers AutoencoderTiny folder (config.json and "
                f"{registry.PREVIEW_WEIGHTS})."
            )
        config = _json_file(source / "config.json")
        if config.get("_class_name") != PREVIEW_DECODER_CLASS:
            kind = config.get("_class_name") or "an unknown class"
            raise InvalidInput(
                f"This folder's config.json is for {kind}, not a tiny preview decoder "
                f"({PREVIEW_DECODER_CLASS})."
            )
        weights = source / registry.PREVIEW_WEIGHTS
        if not weights.is_file():
            raise InvalidInput(
                f"The folder has no {registry.PREVIEW_WEIGHTS}; pickle weights are never loaded: convert "
                "it first."
            )
        header = read_safetensors_header(weights)
    except InvalidInput as exc:
        raise _field(exc) from None
    first_conv = header.get("decoder.layers.0.weight")
    if first_conv is None or len(first_conv["shape"]) != 4:
        message = f"{weights.name} holds no AutoencoderTiny decoder weights."
        raise InvalidInput(message, {"path": [message]})
    wanted = LATENT_CHANNELS[family]
    channels = {int(first_conv["shape"][1]), int(config.get("latent_channels", first_conv["shape"][1]))}
    if channels != {wanted}:
        label = FAMILIES[family].label
        message = (
            f"This decoder reads {'/'.join(str(c) for c in sorted(channels))}-channel latents, but "
            f"{label} latents have {wanted} channels: install a decoder made for {label}."
        )
        raise InvalidInput(message, {"family": [message]})
    return source, config


def do_install_preview_decoder(
    actor: Any, path_text: str, family: str, *, name: str = "", ip: str | None = None
) -> Installed:
    """Install a tiny decoder (TAESD-style ``AutoencoderTiny`` folder) for ``family``'s live previews as
    ``MODELS_DIR/_preview/<family>/``, replacing the family's previous one. Audited."""
    family = (family or "").strip()
    source, _config = check_preview_decoder_source(path_text, family)
    name = (name or "").strip() or source.name
    root = Path(settings.MODELS_DIR) / registry.PREVIEW_DIR
    target = root / family
    with _staged(root) as staging:
        shutil.copyfile(source / "config.json", staging / "config.json")
        weights = staging / registry.PREVIEW_WEIGHTS
        sha256 = _copy_with_sha256(source / registry.PREVIEW_WEIGHTS, weights)
        size = weights.stat().st_size
        meta = _provenance(actor, source, name, family, sha256, size)
        (staging / "decoder.json").write_text(json.dumps(meta, indent=2) + "\n")
        if target.exists():  # the family's previous decoder makes way
            old = root / f".removing-{uuid.uuid4().hex}"
            target.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        staging.rename(target)
    audit.record(
        actor,
        audit.MODEL_INSTALL,
        target=f"preview:{family}",
        ip=ip,
        details={"name": name, "family": family, "sha256": sha256, "size_bytes": size},
    )
    return Installed(family, name, family, sha256, size, target)


# --- IP-Adapters --

# The width of the text each published family's cross-attention reads (an IP-Adapter's image tokens join it).
CROSS_ATTENTION_FAMILIES = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
IP_ADAPTER_ENCODER_CLASS = "CLIPVisionModelWithProjection"


def ip_adapter_families(width: int) -> list[str]:
    """The families whose UNets read ``width``-wide cross-attention: the published family's, else those of
    the installed models whose UNet configs say so (the demo model's narrow one, hand-made models)."""
    if width in CROSS_ATTENTION_FAMILIES:
        return [CROSS_ATTENTION_FAMILIES[width]]
    found = [
        model.family
        for model in registry.list_models()
        if model.family in registry.REFERENCE_FAMILIES and registry.unet_cross_attention_dim(model) == width
    ]
    return sorted(set(found))


def _ip_adapter_weights(source: Path) -> tuple[Path, Path]:
    """The IP-Adapter's weights file and the folder holding it (and its ``image_encoder/``): ``source`` is
    the file, or a folder with exactly one IP-Adapter ``.safetensors`` at its top."""
    if source.is_file():
        if source.suffix.lower() in registry.UNSAFE_SUFFIXES:
            raise NotSafetensors(
                f"{source.name} is a pickle file ({source.suffix}); IP-Adapter weights are only read as "
                "safetensors (ip-adapter_sd15.safetensors, not .bin): install the .safetensors file."
            )
        return source, source.parent
    _refuse_symlinks(source)
    candidates = sorted(p for p in source.iterdir() if p.is_file() and p.suffix == ".safetensors")
    if not candidates:
        pickles = sorted(p.name for p in source.iterdir() if p.suffix.lower() in registry.UNSAFE_SUFFIXES)
        if pickles:
            raise NotSafetensors(
                f"{source.name} holds only pickle weights ({', '.join(pickles)}); IP-Adapter weights are "
                "only read as safetensors: install the .safetensors release."
            )
        raise InvalidInput(f"{source.name} holds no IP-Adapter .safetensors file.")
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise InvalidInput(f"{source.name} holds several .safetensors files ({names}): give the file's path.")
    return candidates[0], source


def check_ip_adapter_source(path_text: str, family: str = "") -> tuple[Path, Path, str, int]:
    """Validate an IP-Adapter to install: (weights file, its image encoder folder, family, cross-attention
    width). The family is the one whose models read the adapter's cross-attention width; ``family`` picks one
    where several do. The weights hold ``image_proj.*`` and ``ip_adapter.*`` tensors; the image encoder is a
    CLIPVisionModelWithProjection folder with safetensors weights whose projection the adapter reads."""
    try:
        source = _source(path_text)
        weights, folder = _ip_adapter_weights(source)
        header = read_safetensors_header(weights)
        if not any(k.startswith("image_proj.") for k in header) or not any(
            k.startswith("ip_adapter.") for k in header
        ):
            raise InvalidInput(
                f"{weights.name} is not an IP-Adapter: it has no image_proj.* and ip_adapter.* tensors."
            )
        to_k = next((k for k in sorted(header) if k.endswith(".to_k_ip.weight")), None)
        if to_k is None:
            raise InvalidInput(f"{weights.name} has no ip_adapter.*.to_k_ip weights.")
        width = _shape(header, to_k, 2)[1]
        encoder = folder / registry.IP_ADAPTER_ENCODER
        if weights.is_symlink() or encoder.is_symlink():
            raise InvalidInput(
                "The IP-Adapter's weights or image encoder are a symbolic link; install a copy with its "
                "links resolved (cp -rL)."
            )
        if encoder.is_dir():
            _refuse_symlinks(encoder)
        if not (encoder / "config.json").is_file():
            raise InvalidInput(
                f"No image encoder beside {weights.name}: put its image_encoder/ folder (config.json and "
                "model.safetensors) next to it."
            )
        config = _json_file(encoder / "config.json")
        if IP_ADAPTER_ENCODER_CLASS not in (config.get("architectures") or []):
            raise InvalidInput(
                f"image_encoder/ is not a {IP_ADAPTER_ENCODER_CLASS} (its config.json says not)."
            )
        encoder_weights = encoder / "model.safetensors"
        if not encoder_weights.is_file():
            raise NotSafetensors(
                "image_encoder/ has no model.safetensors; pickle weights (pytorch_model.bin) are never "
                "loaded: convert it first."
            )
        read_safetensors_header(encoder_weights)
        proj = header.get("image_proj.proj.weight")
        projection = config.get("projection_dim")
        if (
            proj is not None
            and isinstance(projection, int)
            and _shape(header, "image_proj.proj.weight", 2)[1] != projection
        ):
            raise InvalidInput(
                f"The image encoder's projection is {projection} wide but {weights.name} reads "
                f"{proj['shape'][1]}: install the image encoder it was made with."
            )
    except InvalidInput as exc:
        raise _field(exc) from None
    families = ip_adapter_families(width)
    family = (family or "").strip()
    if family and family not in FAMILIES:
        raise InvalidInput("Unknown family.", {"family": [f"Choose one of: {', '.join(FAMILIES)}."]})
    if not families:
        message = (
            f"No model family the studio runs reads {width}-wide cross-attention, as this IP-Adapter does."
        )
        raise InvalidInput(message, {"path": [message]})
    if family and family not in families:
        message = (
            f"This IP-Adapter reads {width}-wide cross-attention, as "
            f"{' and '.join(FAMILIES[f].label for f in families)} models do, not {FAMILIES[family].label}."
        )
        raise InvalidInput(message, {"family": [message]})
    if not family and len(families) > 1:
        message = (
            f"{' and '.join(FAMILIES[f].label for f in families)} models both read {width}-wide "
            "cross-attention: choose the family."
        )
        raise InvalidInput(message, {"family": [message]})
    family = family or families[0]
    return weights, encoder, family, width


def do_install_ip_adapter(
    actor: Any, path_text: str, *, name: str = "", family: str = "", ip: str | None = None
) -> Installed:
    """Validate an IP-Adapter (its safetensors weights and the ``image_encoder/`` beside them) and install
    it under ``MODELS_DIR/_ip_adapters/<id>/``, attached to the family its cross-attention width shows.
    Audited."""
    weights, encoder, family, width = check_ip_adapter_source(path_text, family)
    name = (name or "").strip() or weights.stem
    models_dir = Path(settings.MODELS_DIR)
    root = models_dir / registry.IP_ADAPTERS_DIR
    taken = {m.id for m in registry.list_models()} | {lora.id for lora in registry.list_loras()}
    taken |= {a.id for a in registry.list_ip_adapters()}
    taken |= {p.name for p in root.iterdir()} if root.is_dir() else set()
    adapter_id = _new_id(name, taken)
    with _staged(root) as staging:
        sha256 = _copy_with_sha256(weights, staging / registry.IP_ADAPTER_WEIGHTS)
        target = staging / registry.IP_ADAPTER_ENCODER
        target.mkdir()
        shutil.copyfile(encoder / "config.json", target / "config.json")
        encoder_sha256 = _copy_with_sha256(encoder / "model.safetensors", target / "model.safetensors")
        size = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
        meta = {
            **_provenance(actor, weights, name, family, sha256, size),
            "file": weights.name,
            "cross_attention_dim": width,
            "image_encoder_sha256": encoder_sha256,
        }
        (staging / "ip_adapter.json").write_text(json.dumps(meta, indent=2) + "\n")
        staging.rename(root / adapter_id)
    audit.record(
        actor,
        audit.MODEL_INSTALL,
        target=f"ip_adapter:{adapter_id}",
        ip=ip,
        details={"name": name, "family": family, "sha256": sha256, "size_bytes": size},
    )
    return Installed(adapter_id, name, family, sha256, size, root / adapter_id)


# --- LoRAs in a job --


def check_loras(
    chosen: list[Any], model: registry.ModelInfo, errors: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """A job's LoRAs (``LoraRef``s: their count and weights are the request type's to check): installed ones
    of the model's family, each once. Returns them as stored in the job's params (with each file's sha256,
    for provenance)."""
    used: list[dict[str, Any]] = []
    problems: list[str] = []
    for item in chosen:
        lora = registry.get_lora(item.id)
        if lora is None:
            problems.append(f"No such LoRA: {item.id!r}.")
        elif lora.family != model.family:
            problems.append(f"{lora.name} is for {FAMILIES[lora.family].label} models, not {model.name}.")
        elif any(c["id"] == lora.id for c in used):
            problems.append(f"{lora.name} is chosen twice.")
        else:
            used.append({"id": lora.id, "weight": float(item.weight), "sha256": lora.sha256})
    if problems:
        errors["loras"] = problems
    return used


# --- ControlNet annotators --

# The preprocessors a ControlNet may name that need no weights; "depth" and "pose" join them once an annotator
# of that kind is installed (``available_preprocessors``).
WEIGHTLESS_PREPROCESSORS = ("canny", "lineart", "scribble", "none")
ANNOTATOR_MISSING = "No {kind} annotator is installed: an admin can install one under Manage → Models."
# The keypoints a pose map draws: COCO's 17 (nose, eyes, ears, shoulders, elbows, wrists, hips, knees,
# ankles).
POSE_KEYPOINTS = 17
# A folder's files an annotator install copies: its configs and its safetensors weights (nothing else).
ANNOTATOR_FILES = ("config.json", "preprocessor_config.json", "model.safetensors.index.json")


def annotator_missing(kind: str) -> str:
    """The sentence for a ControlNet that asks for ``kind`` ("depth", "pose") where no annotator of that kind
    is installed."""
    return ANNOTATOR_MISSING.format(kind=kind)


def available_preprocessors() -> list[str]:
    """The preprocessors a ControlNet may name now: the weightless ones, then "depth" and "pose" for each kind
    with an installed annotator (``registry.annotator_for``)."""
    found = list(WEIGHTLESS_PREPROCESSORS)
    found += [kind for kind in registry.ANNOTATOR_KINDS if registry.annotator_for(kind) is not None]
    return found


def _annotator_weights(source: Path) -> list[Path]:
    """The safetensors weights of a transformers folder: ``model.safetensors``, or the shards its
    ``model.safetensors.index.json`` names (each one present, beside it)."""
    index_file = source / "model.safetensors.index.json"
    if index_file.is_file():
        weight_map = _json_file(index_file).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise InvalidInput("model.safetensors.index.json names no weight files.")
        shards = sorted({str(name) for name in weight_map.values()})
        for name in shards:
            if "/" in name or "\\" in name or not name.endswith(".safetensors"):
                raise InvalidInput(f"model.safetensors.index.json names {name!r}, not a .safetensors file.")
            if not (source / name).is_file():
                raise InvalidInput(
                    f"The weight file {name}, named in model.safetensors.index.json, is missing."
                )
        return [source / name for name in shards]
    if (source / "model.safetensors").is_file():
        return [source / "model.safetensors"]
    raise InvalidInput(
        "The folder has no model.safetensors (or sharded safetensors with model.safetensors.index.json)."
    )


def check_annotator_source(path_text: str) -> tuple[Path, str, str, list[Path]]:
    """Validate an annotator at ``path_text``: a transformers folder whose ``config.json`` has a model type
    the studio runs as an annotator (``registry.ANNOTATOR_MODEL_TYPES``), with safetensors weights and no
    pickle files. Returns (folder, kind, model type, weight files)."""
    try:
        source = _source(path_text)
        if not source.is_dir() or not (source / "config.json").is_file():
            raise InvalidInput(
                "An annotator is a transformers model folder (config.json and model.safetensors)."
            )
        _refuse_symlinks(source)
        pickles = sorted(
            str(p.relative_to(source))
            for p in source.rglob("*")
            if p.is_file() and p.suffix.lower() in registry.UNSAFE_SUFFIXES
        )
        if pickles:
            raise NotSafetensors(
                f"This folder holds pickle weights ({', '.join(pickles)}), which are never loaded: an "
                "annotator's weights must be safetensors. Remove the pickle files (or convert the model to "
                "safetensors) and install again."
            )
        config = _json_file(source / "config.json")
        model_type = str(config.get("model_type") or "")
        kind = registry.ANNOTATOR_MODEL_TYPES.get(model_type)
        if kind is None:
            raise InvalidInput(
                f"This folder's config.json is for model type {model_type or 'unknown'!r}; the studio runs "
                "depth annotators of model type dpt or depth_anything, and pose annotators of model type "
                "vitpose."
            )
        weights = _annotator_weights(source)
        headers = [read_safetensors_header(path) for path in weights]
        if kind == "pose":
            head = next((h["head.conv.weight"] for h in headers if "head.conv.weight" in h), None)
            if head is None or not head["shape"] or head["shape"][0] != POSE_KEYPOINTS:
                found = head["shape"][0] if head and head["shape"] else "no"
                raise InvalidInput(
                    f"This pose model predicts {found} keypoints; the studio draws COCO's {POSE_KEYPOINTS} "
                    "(ViTPose models trained on COCO)."
                )
        return source, kind, model_type, weights
    except InvalidInput as exc:
        raise _field(exc) from None


def do_install_annotator(
    actor: Any, path_text: str, name: str | None = None, ip: str | None = None
) -> Installed:
    """Validate a depth or pose annotator folder at ``path_text`` (``check_annotator_source``) and install its
    configs and safetensors weights as ``MODELS_DIR/_annotators/<id>/``; the id comes from the name (the
    folder's name when none is given). ``Installed.family`` is the annotator's kind. Audited."""
    source, kind, model_type, weights = check_annotator_source(path_text)
    name = (name or "").strip() or source.name
    root = Path(settings.MODELS_DIR) / registry.ANNOTATORS_DIR
    annotator_id = _slug(name)
    if not annotator_id:
        raise InvalidInput(
            "Enter a name with letters or digits.", {"name": ["Enter a name with letters or digits."]}
        )
    taken = {a.id for a in registry.list_annotators()}
    taken |= {p.name for p in root.iterdir()} if root.is_dir() else set()
    if annotator_id in taken:
        message = f"An annotator with the id {annotator_id!r} is already installed; choose another name."
        raise InvalidInput(message, {"name": [message]})
    with _staged(root) as staging:
        for file_name in ANNOTATOR_FILES:
            if (source / file_name).is_file():
                shutil.copyfile(source / file_name, staging / file_name)
        for path in weights:
            shutil.copyfile(path, staging / path.name)
        sha256 = registry.folder_sha256(staging)
        (staging / ".studio-sha256").unlink(missing_ok=True)
        size = sum(p.stat().st_size for p in staging.iterdir() if p.is_file())
        meta = _provenance(actor, source, name, kind, sha256, size)
        del meta["family"]
        meta.update(kind=kind, model_type=model_type)
        (staging / registry.ANNOTATOR_META).write_text(json.dumps(meta, indent=2) + "\n")
        staging.rename(root / annotator_id)
    audit.record(
        actor,
        audit.MODEL_INSTALL,
        target=f"annotator:{annotator_id}",
        ip=ip,
        details={"name": name, "kind": kind, "model_type": model_type, "sha256": sha256, "size_bytes": size},
    )
    return Installed(annotator_id, name, kind, sha256, size, root / annotator_id)


# --- ControlNets --


def detect_controlnet_family(config: dict[str, Any]) -> str | None:
    """A ControlNet's family where its config tells: FLUX's class, SDXL's added text-and-time embedding, or
    the text width its cross-attention reads (768: SD 1.x, 1024: SD 2.x); None when it does not (a folder
    made by hand, e.g. for the demo model)."""
    class_name = config.get("_class_name")
    if class_name == "FluxControlNetModel":
        return "flux"
    if config.get("addition_embed_type") == "text_time":
        return "sdxl"
    return {768: "sd1", 1024: "sd2"}.get(config.get("cross_attention_dim"))  # type: ignore[arg-type]


def check_controlnet_source(path_text: str, family: str = "") -> tuple[Path, str, dict[str, Any]]:
    """Validate a ControlNet to install: a diffusers folder with ``config.json`` (``ControlNetModel``, or
    ``FluxControlNetModel``) and safetensors weights, of a family that takes ControlNets: the one its config
    shows, else the one given. Returns (folder, family, config)."""
    family = (family or "").strip()
    if family and family not in FAMILIES:
        raise InvalidInput("Unknown family.", {"family": [f"Choose one of: {', '.join(FAMILIES)}."]})
    try:
        source = _source(path_text)
        if source.is_file():
            if source.suffix.lower() in registry.UNSAFE_SUFFIXES:
                raise NotSafetensors(_not_safetensors(source, f"{source.suffix} is a pickle format"))
            raise InvalidInput(
                "A ControlNet is installed as its diffusers folder (config.json and "
                f"{registry.CONTROLNET_WEIGHTS}), not a single file."
            )
        _refuse_symlinks(source)
        if not (source / "config.json").is_file():
            raise InvalidInput(f"{source} is not a diffusers ControlNet folder (it has no config.json).")
        config = _json_file(source / "config.json")
        class_name = config.get("_class_name")
        if class_name not in CONTROLNET_CLASSES:
            kind = class_name or "an unknown class"
            raise InvalidInput(
                f"This folder's config.json is for {kind}, not a ControlNet the studio runs "
                f"({' or '.join(CONTROLNET_CLASSES)})."
            )
        if config.get("num_mode") is not None:
            raise InvalidInput("Union ControlNets (several kinds of control in one) are not supported.")
        weights = source / registry.CONTROLNET_WEIGHTS
        if not weights.is_file():
            pickles = sorted(p.name for p in source.iterdir() if p.suffix in registry.UNSAFE_SUFFIXES)
            found = f" (it holds {', '.join(pickles)})" if pickles else ""
            raise InvalidInput(
                f"The folder has no {registry.CONTROLNET_WEIGHTS}{found}; pickle weights are never loaded: "
                "convert it to safetensors first."
            )
        header = read_safetensors_header(weights)
    except InvalidInput as exc:
        raise _field(exc) from None
    if not any(k.startswith(("controlnet_cond_embedding.", "controlnet_x_embedder.")) for k in header):
        message = f"{weights.name} holds no ControlNet weights."
        raise InvalidInput(message, {"path": [message]})
    detected = detect_controlnet_family(config)
    if detected and family and detected != family:
        message = f"This ControlNet is for {FAMILIES[detected].label} models, not {FAMILIES[family].label}."
        raise InvalidInput(message, {"family": [message]})
    family = family or detected or ""
    if not family:
        message = "Its config does not tell which family this ControlNet is for: choose the family."
        raise InvalidInput(message, {"family": [message]})
    if family not in CONTROLNET_CLASSES[str(class_name)]:
        message = f"{FAMILIES[family].label} models take no {class_name}."
        raise InvalidInput(message, {"family": [message]})
    return source, family, config


def do_install_controlnet(
    actor: Any, path_text: str, *, name: str = "", family: str = "", ip: str | None = None
) -> Installed:
    """Install a ControlNet (a diffusers folder) as ``MODELS_DIR/_controlnets/<id>/``: its config.json and
    safetensors weights, and ``controlnet.json`` with the weights' sha256. Audited."""
    source, family, _config = check_controlnet_source(path_text, family)
    name = (name or "").strip() or source.name
    root = Path(settings.MODELS_DIR) / registry.CONTROLNETS_DIR
    taken = _taken_ids() | ({p.name for p in root.iterdir()} if root.is_dir() else set())
    controlnet_id = _new_id(name, taken)
    with _staged(root) as staging:
        shutil.copyfile(source / "config.json", staging / "config.json")
        weights = staging / registry.CONTROLNET_WEIGHTS
        sha256 = _copy_with_sha256(source / registry.CONTROLNET_WEIGHTS, weights)
        size = weights.stat().st_size
        meta = _provenance(actor, source, name, family, sha256, size)
        (staging / registry.CONTROLNET_META).write_text(json.dumps(meta, indent=2) + "\n")
        staging.rename(root / controlnet_id)
    audit.record(
        actor,
        audit.MODEL_INSTALL,
        target=f"controlnet:{controlnet_id}",
        ip=ip,
        details={"name": name, "family": family, "sha256": sha256, "size_bytes": size},
    )
    return Installed(controlnet_id, name, family, sha256, size, root / controlnet_id)


def check_controlnets(
    chosen: list[Any], model: registry.ModelInfo, errors: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """A job's ControlNet units (``ControlNetRef``s: their count and ranges are the request type's to check):
    installed ControlNets that fit the model, each unit starting before it ends. The control images are the
    caller's to check. Returns them as stored in the job's params (with each ControlNet's name and sha256, for
    provenance)."""
    used: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, unit in enumerate(chosen, start=1):
        where = f"ControlNet {number}: " if len(chosen) > 1 else ""
        controlnet = registry.get_controlnet(unit.id)
        misfit = None if controlnet is None else registry.controlnet_misfit(controlnet, model)
        if controlnet is None:
            problems.append(f"{where}no such ControlNet: {unit.id!r}.")
        elif misfit:
            problems.append(where + misfit)
        elif unit.preprocessor not in available_preprocessors():
            problems.append(where + annotator_missing(unit.preprocessor))
        elif unit.start >= unit.end:
            problems.append(
                f"{where}it must start before it ends (start {unit.start:g}, end {unit.end:g}: both are "
                "shares of the steps, 0 to 1)."
            )
        else:
            used.append(
                {
                    "id": controlnet.id,
                    "name": controlnet.name,
                    "sha256": controlnet.sha256,
                    "image": str(unit.image),
                    "preprocessor": unit.preprocessor,
                    "weight": float(unit.weight),
                    "start": float(unit.start),
                    "end": float(unit.end),
                }
            )
    if problems:
        errors["controlnets"] = problems
    return used
