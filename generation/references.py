"""Reference images on a job: which images and IP-Adapters a request may use, resolved into what the job
records (``JobParams.references``). The engine's side is ``engine/reference.py`` (attention injection) and
``engine/ip_adapter.py``. Plain Python: no torch.

A reference is an image of the job's project that the user sees (another project's image and a missing one
get the same answer, as a start image does). Kind ``reference`` needs a UNet model; kind ``ip_adapter`` an
installed IP-Adapter of the model's family whose cross-attention width fits the model; all of a job's
IP-Adapter references go through one IP-Adapter (each with its own weight).
"""

from __future__ import annotations

from typing import Any

from .engine import registry
from .engine.families import FAMILIES
from .schemas import MAX_JOB_REFERENCES, NO_SUCH_ASSET, ReferenceRef

# The modes whose pipelines take reference images.
REFERENCE_MODES = ("txt2img", "img2img", "inpaint")


def _label(family: str) -> str:
    found = FAMILIES.get(family)
    return found.label if found else family


def choose_ip_adapter(
    wanted: str | None, model: registry.ModelInfo, problems: list[str]
) -> registry.IpAdapterInfo | None:
    """The IP-Adapter a reference names, or the first installed one that fits the model; None (and a
    sentence in ``problems``) when there is none that fits."""
    if wanted:
        adapter = registry.get_ip_adapter(wanted)
        if adapter is None:
            problems.append(f"No such IP-Adapter: {wanted!r}.")
        elif not registry.ip_adapter_fits(adapter, model):
            problems.append(
                f"The IP-Adapter {adapter.name} is for {_label(adapter.family)} models, not {model.name}."
            )
            return None
        return adapter
    fitting = [a for a in registry.list_ip_adapters(model.family) if registry.ip_adapter_fits(a, model)]
    if not fitting:
        others = registry.list_ip_adapters()
        extra = ""
        if others:
            families = ", ".join(sorted({_label(a.family) for a in others}))
            extra = f" (the IP-Adapters installed are for {families} models)"
        problems.append(f"No IP-Adapter for {model.name} is installed{extra}: use kind reference instead.")
        return None
    return fitting[0]


def check_references(
    chosen: list[ReferenceRef],
    model: registry.ModelInfo,
    user: Any,
    project: Any,
    errors: dict[str, list[str]],
) -> list[dict[str, Any]]:
    """A job's references (``ReferenceRef``s: count, kinds and ranges are the request type's to check),
    resolved as the job's params store them: each image's sha256 and, for IP-Adapter references, the
    IP-Adapter's id, name and sha256. Problems go to ``errors["references"]``."""
    from gallery.permissions import assets_visible_to

    problems: list[str] = []
    if chosen and model.family not in registry.REFERENCE_FAMILIES:
        errors["references"] = [f"{model.name} does not take reference images."]
        return []
    wanted = [str(item.image) for item in chosen]
    found: dict[str, Any] = {}
    if user is not None and project is not None and wanted:
        found = {
            str(a.id): a for a in assets_visible_to(user).filter(project=project, id__in=wanted) if a.file
        }
    used: list[dict[str, Any]] = []
    adapter_used: registry.IpAdapterInfo | None = None
    for number, item in enumerate(chosen, start=1):
        asset = found.get(str(item.image))
        if asset is None:
            problems.append(f"Reference {number}: {NO_SUCH_ASSET}")
            continue
        entry: dict[str, Any] = {
            "image": str(asset.id),
            "kind": item.kind,
            "weight": float(item.weight),
            "sha256": asset.sha256,
        }
        if item.kind == "reference":
            if item.ip_adapter:
                problems.append(f"Reference {number}: an IP-Adapter is only for kind ip_adapter.")
                continue
            entry["fidelity"] = float(item.fidelity)
        else:
            adapter = choose_ip_adapter(item.ip_adapter, model, problems)
            if adapter is None:
                continue
            if adapter_used is not None and adapter.id != adapter_used.id:
                problems.append("All IP-Adapter references of a job go through one IP-Adapter.")
                continue
            adapter_used = adapter
            entry["ip_adapter"] = {"id": adapter.id, "name": adapter.name, "sha256": adapter.sha256}
        used.append(entry)
    if problems:
        errors["references"] = list(dict.fromkeys(problems))
    return used


def style_references(stored: list[str]) -> list[ReferenceRef]:
    """A style's reference images as a job's: kind reference, weight 1, the default fidelity (the first
    ``MAX_JOB_REFERENCES``: a style may keep more images than one job takes)."""
    return [ReferenceRef.model_validate({"image": image}) for image in stored[:MAX_JOB_REFERENCES]]
