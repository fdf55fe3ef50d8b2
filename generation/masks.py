"""Masks painted in the browser and sent as PNG data URLs: the inpainting mask and regions' masks."""

from __future__ import annotations

import base64
import binascii

from PIL import Image

from gallery.services import decode_image, upload_max_pixels
from studio.errors import InvalidInput

from .schemas import MASK_PREFIX


def read_mask(value: str) -> Image.Image:
    """A mask's PNG data URL as a greyscale image, pure black and white (white = painted). Decoded with
    Pillow from a PNG data URL only; transparency counts as black. InvalidInput (its sentence under "mask")
    when it is not valid base64 or not a PNG that can be read."""
    try:
        data = base64.b64decode(value[len(MASK_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(
            "The mask is not valid base64.", {"mask": ["The mask is not valid base64."]}
        ) from exc
    not_readable = "The mask is not a PNG image we can read."
    image = decode_image(
        data, field="mask", formats=("PNG",), max_pixels=upload_max_pixels(), not_readable=not_readable
    )
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (0, 0, 0))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    return image.convert("L").point(lambda v: 255 if v >= 128 else 0)
