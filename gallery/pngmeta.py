"""Provenance inside the PNG: a ``parameters`` text chunk in the form other tools read, and a JSON chunk."""

from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo


def a1111_parameters(params: dict[str, Any], model_name: str, model_sha256: str) -> str:
    lines = [params.get("prompt", "")]
    if params.get("negative_prompt"):
        lines.append(f"Negative prompt: {params['negative_prompt']}")
    fields = [
        f"Steps: {params['steps']}",
        f"Sampler: {params['scheduler']}",
        f"CFG scale: {params['guidance_scale']}",
        f"Seed: {params['seed']}",
        f"Size: {params['width']}x{params['height']}",
        f"Model hash: {model_sha256[:10]}",
        f"Model: {model_name}",
    ]
    # Images made from another image: the mode, how strongly it was repainted, and which image it was.
    if params.get("strength") is not None:
        fields.append(f"Denoising strength: {params['strength']}")
    if params.get("mode") not in (None, "txt2img"):
        fields.append(f"Mode: {params['mode']}")
    if params.get("init_asset"):
        fields.append(f"Init image: {params['init_asset']}")
    # ControlNet units as sd-webui-controlnet writes them: one quoted field each.
    for index, unit in enumerate(params.get("controlnets") or []):
        model = f"{unit.get('name') or unit.get('id')} [{str(unit.get('sha256', ''))[:8]}]"
        parts = [
            f"Module: {unit.get('preprocessor', 'none')}",
            f"Model: {model}",
            f"Weight: {unit.get('weight', 1.0)}",
            "Resize Mode: Crop and Resize",
            f"Guidance Start: {unit.get('start', 0.0)}",
            f"Guidance End: {unit.get('end', 1.0)}",
        ]
        fields.append(f'ControlNet {index}: "{", ".join(parts)}"')
    lines.append(", ".join(fields))
    return "\n".join(lines)


def png_with_provenance(image: Image.Image, params: dict[str, Any], provenance: dict[str, Any]) -> bytes:
    info = PngInfo()
    info.add_text(
        "parameters", a1111_parameters(params, provenance["model_name"], provenance["model_sha256"])
    )
    info.add_itxt("studio", json.dumps({"params": params, **provenance}, sort_keys=True))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", pnginfo=info, compress_level=4)
    return buffer.getvalue()


def read_provenance(data: bytes) -> dict[str, Any]:
    with Image.open(io.BytesIO(data)) as image:
        text = dict(getattr(image, "text", {}))
    return {
        "parameters": text.get("parameters"),
        "studio": json.loads(text["studio"]) if "studio" in text else None,
    }
