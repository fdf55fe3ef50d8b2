"""IP-Adapters for one job: an installed adapter (``registry.IpAdapterInfo``) loaded into the pipeline that
runs the call, each of the job's IP-Adapter references at its own weight, and unloaded afterwards.

Loaded per job rather than kept with the cached model: an adapter's weights are small beside the model's
(the image encoder is the larger part, a few hundred MB for the published ones), loading them takes well
under the time of a job's steps, and a pipeline that never keeps them is exactly the pipeline a job without
an IP-Adapter expects, with nothing for the pipeline cache's memory accounting to miss.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from PIL import Image

from . import registry
from .errors import GenerationError


@contextmanager
def ip_adapter_applied(
    pipe: Any, info: registry.ModelInfo, uses: Sequence[tuple[Any, Image.Image]]
) -> Iterator[dict[str, Any]]:
    """Load the IP-Adapter of ``uses`` (``(ReferenceUse, image)`` pairs, all through one adapter) into
    ``pipe`` once per reference, each at its reference's weight, and yield the call's extra arguments
    (``ip_adapter_image``); unload it on the way out, whatever happens. Local files only, safetensors only."""
    if not uses:
        yield {}
        return
    wanted = uses[0][0].ip_adapter
    adapter = registry.get_ip_adapter(wanted.id) if wanted is not None else None
    if adapter is None:
        raise GenerationError("The job's IP-Adapter is no longer installed.")
    if not registry.ip_adapter_fits(adapter, info):
        raise GenerationError(f"The IP-Adapter {adapter.name!r} is not for {info.name}.")
    if getattr(pipe, "unet", None) is None or not hasattr(pipe, "load_ip_adapter"):
        raise GenerationError(f"{info.name} does not take IP-Adapters.")
    count = len(uses)
    extractor = getattr(pipe, "feature_extractor", None)
    try:
        pipe.load_ip_adapter(
            [str(adapter.path)] * count,
            subfolder=[""] * count,
            weight_name=[registry.IP_ADAPTER_WEIGHTS] * count,
            image_encoder_folder=registry.IP_ADAPTER_ENCODER,
            local_files_only=True,
        )
        pipe.set_ip_adapter_scale([float(use.weight) for use, _ in uses])
        yield {"ip_adapter_image": [image.convert("RGB") for _, image in uses]}
    finally:
        if getattr(pipe, "image_encoder", None) is not None or pipe.unet.encoder_hid_proj is not None:
            pipe.unload_ip_adapter()
        if extractor is None and getattr(pipe, "feature_extractor", None) is not None:
            # (made for this adapter's image encoder: the next adapter's may read another size)
            pipe.register_modules(feature_extractor=None)
