"""Writes in the gallery."""

from __future__ import annotations

from typing import Any

from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image

from .models import Asset
from .pngmeta import png_with_provenance


def do_create_job_assets(
    job: Any, images: list[Image.Image], seeds: list[int], *, model_name: str, model_sha256: str
) -> list[Asset]:
    """Store a finished job's images as assets. Call inside the transaction that marks the job succeeded;
    the (job, index) constraint makes a second call for the same job fail instead of duplicating."""
    assets = []
    saved_files = []
    try:
        for index, (image, seed) in enumerate(zip(images, seeds, strict=True)):
            params = dict(job.params, seed=seed, num_images=1)
            asset = Asset(
                project_id=job.project_id,
                job=job,
                index=index,
                width=image.width,
                height=image.height,
                seed=seed,
                prompt=job.params["prompt"],
                negative_prompt=job.params.get("negative_prompt", ""),
                params=params,
                model_id=job.model_id,
                model_name=model_name,
                model_sha256=model_sha256,
                created_by_id=job.created_by_id,
                created_at=timezone.now(),
            )
            data = png_with_provenance(
                image,
                params,
                {
                    "model": job.model_id,
                    "model_name": model_name,
                    "model_sha256": model_sha256,
                    "job": str(job.id),
                    "asset": str(asset.id),
                    "project": job.project.slug,
                    "created_by": job.created_by.username,
                },
            )
            asset.file.save(f"{asset.id}.png", ContentFile(data), save=False)
            saved_files.append(str(asset.file.name))
            asset.save()
            assets.append(asset)
    except Exception:
        # The transaction rolls the rows back; take the files with it.
        storage = Asset._meta.get_field("file").storage
        for name in saved_files:
            storage.delete(name)
        raise
    return assets
