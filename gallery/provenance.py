"""What the studio's Content Credentials say about its images, and what it reads back out of a file.

``gallery.credentials`` holds the C2PA mechanics (keys, signing, reading); this module decides what goes in
a manifest (who, what model, which project, which parameters, which review) and what a Verify answer shows
(only assets in projects the asker can see).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from studio import audit
from studio.errors import InvalidInput

from . import credentials
from .models import Asset, AssetStatus, Credentials, Decision
from .permissions import assets_visible_to

logger = logging.getLogger(__name__)

# Parameters never put in a manifest: storage names are the studio's own business.
_PRIVATE_PARAMS = {"mask"}
_PROMPT_PARAMS = {"prompt", "negative_prompt"}
CONTROLNET_KEYS = ("id", "name", "sha256", "weight", "start", "end", "preprocessor", "image", "map_sha256")
EDIT_MODES = {"img2img", "inpaint", "outpaint", "variation", "upscale"}
NOT_READABLE = "That file is not an image the Verify page can read (PNG, JPEG or WebP)."


def manifest_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """The job parameters a manifest carries: all but storage names; prompts only if the site says so."""
    hidden = _PRIVATE_PARAMS | (set() if settings.STUDIO_C2PA_INCLUDE_PROMPT else _PROMPT_PARAMS)
    carried = {k: v for k, v in sorted(params.items()) if k not in hidden}
    if carried.get("regions"):
        carried["regions"] = [_region_parameters(region) for region in carried["regions"]]
    return carried


def _region_parameters(region: Any) -> Any:
    """A regional prompt as a manifest carries it: its box or its mask's sha256, its weight and (if the
    site says so) its prompt; never where its mask is stored."""
    if not isinstance(region, dict):
        return region
    hidden = {"mask"} | (set() if settings.STUDIO_C2PA_INCLUDE_PROMPT else {"prompt"})
    return {k: v for k, v in sorted(region.items()) if k not in hidden}


def _author(username: str) -> dict[str, Any]:
    return {
        "label": "stds.schema-org.CreativeWork",
        "data": {
            "@context": "https://schema.org",
            "@type": "CreativeWork",
            "author": [{"@type": "Person", "name": username}],
        },
    }


def generation_manifest(
    asset: Asset, *, project_slug: str, project_name: str, author: str, with_parent: bool
) -> dict[str, Any]:
    """The creation manifest of a generated image: ``c2pa.created`` (text to image, or a start image that
    is gone), or ``c2pa.opened`` on its parent then ``c2pa.edited`` (img2img, inpainting, variations,
    upscales)."""
    mode = str(asset.params.get("mode") or "txt2img")
    agent = {"name": credentials.GENERATOR, "version": credentials.studio_version()}
    model = {"id": asset.model_id, "name": asset.model_name, "sha256": asset.model_sha256}
    if mode in EDIT_MODES and with_parent:
        source = credentials.COMPOSITE_TRAINED if mode in ("inpaint", "outpaint") else credentials.TRAINED
        acts = credentials.actions(
            {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}},
            {
                "action": "c2pa.edited",
                "description": {
                    "img2img": "Repainted from a start image",
                    "inpaint": "Inpainted",
                    "outpaint": "Extended the canvas",
                    "variation": "Varied",
                    "upscale": "Upscaled",
                }[mode],  # fmt: skip
                "digitalSourceType": source,
                "softwareAgent": agent,
            },
        )
    else:
        acts = credentials.actions(
            {"action": "c2pa.created", "digitalSourceType": credentials.TRAINED, "softwareAgent": agent}
        )
    generation = {
        "asset": str(asset.id),
        "job": str(asset.job_id) if asset.job_id else None,
        "project": {"slug": project_slug, "name": project_name},
        "author": author,
        "model": model,
        "mode": mode,
        "parameters": manifest_parameters(asset.params),
        # The project style it was made with and that style's version then (None without one).
        "style": asset.params.get("style"),
        # The reference images that steered it (asset id, kind, weight, fidelity, the image's sha256 and
        # any IP-Adapter's id, name and sha256); empty without any.
        "references": list(asset.params.get("references") or []),
        # The ControlNet units that steered it: each ControlNet's id, name and sha256, its weight, start and
        # end, the preprocessor, the control image's asset id and the sha256 of the map it made.
        "controlnets": [
            {k: unit.get(k) for k in CONTROLNET_KEYS} for unit in asset.params.get("controlnets") or []
        ],
        "prompt_included": bool(settings.STUDIO_C2PA_INCLUDE_PROMPT),
    }
    return credentials.manifest(
        f"{asset.id}.png",
        [acts, {"label": credentials.GENERATION_LABEL, "data": generation}, _author(author)],
    )


def sign_generated(asset: Asset, png: bytes, *, parent_png: bytes | None, project: Any, author: str) -> bytes:
    """Sign a new image's PNG and record the outcome on the (unsaved) asset. A failure never loses the
    image: it is kept unsigned, the cause is logged and recorded, and the audit log shows it to admins."""
    if not settings.STUDIO_C2PA:
        asset.credentials = Credentials.NONE
        return png
    parent = None
    if parent_png is not None and asset.parent_id:
        parent = credentials.Parent(parent_png, f"{asset.parent_id}.png", f"studio:asset:{asset.parent_id}")
    manifest = generation_manifest(
        asset,
        project_slug=project.slug,
        project_name=project.name,
        author=author,
        with_parent=parent is not None,
    )
    try:
        signed = credentials.sign_png(manifest, png, parent)
    except credentials.SigningUnavailable as exc:
        logger.exception("could not sign asset %s; keeping it unsigned", asset.id)
        asset.credentials = Credentials.UNSIGNED
        asset.credentials_error = str(exc)[:500]
        audit.record(
            None,
            audit.ASSET_SIGN_FAILED,
            target=f"asset:{asset.id}",
            project=project,
            details={"asset": str(asset.id), "cause": str(exc)[:300]},
        )
        return png
    asset.credentials = Credentials.SIGNED
    asset.credentials_error = ""
    asset.manifest_label = credentials.signed_manifest_label(signed) or ""
    return signed


def export_manifest(asset: Asset, *, exported_by: str) -> dict[str, Any]:
    """An export's manifest: ``c2pa.opened`` on the stored image (its creation manifest is the ingredient),
    ``c2pa.published``, and the review decisions: who approved, and when."""
    decisions = [
        {"decision": r.decision, "by": r.by.get_username(), "at": r.at.isoformat()}
        for r in asset.reviews.all()
    ]
    approvals = [d for d in decisions if d["decision"] == Decision.APPROVE]
    review = {
        "asset": str(asset.id),
        "status": asset.status,
        "approved_by": approvals[-1]["by"] if asset.status == AssetStatus.APPROVED and approvals else None,
        "approved_at": approvals[-1]["at"] if asset.status == AssetStatus.APPROVED and approvals else None,
        "decisions": decisions,
        "exported_by": exported_by,
        "exported_at": timezone.now().isoformat(),
    }
    published = "Exported"
    if review["approved_by"]:
        published = f"Exported after approval by {review['approved_by']}"
    return credentials.manifest(
        f"{asset.id}.png",
        [
            credentials.actions(
                {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}},
                {"action": "c2pa.published", "description": published},
            ),
            {"label": credentials.REVIEW_LABEL, "data": review},
        ],
    )


def sign_export(asset: Asset, png: bytes, *, exported_by: str) -> bytes:
    """The exported copy of an asset's PNG with a further manifest carrying its review; the stored PNG
    when signing is off or fails (an export never fails for it)."""
    if not settings.STUDIO_C2PA:
        return png
    parent = credentials.Parent(png, f"{asset.id}.png", f"studio:asset:{asset.id}")
    try:
        return credentials.sign_png(export_manifest(asset, exported_by=exported_by), png, parent)
    except credentials.SigningUnavailable:
        logger.exception("could not sign the export of asset %s; exporting it as stored", asset.id)
        return png


# --- verify --


def _sniff(data: bytes) -> str:
    """The MIME type of an image people drop on the Verify page, or InvalidInput."""
    try:
        with Image.open(io.BytesIO(data), formats=["PNG", "JPEG", "WEBP"]) as image:
            kind = image.format
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInput(NOT_READABLE, {"image": [NOT_READABLE]}) from exc
    return {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}[str(kind)]


def _asset_ref(asset: Asset) -> dict[str, Any]:
    return {
        "id": str(asset.id),
        "project": asset.project.slug,
        "project_name": asset.project.name,
        "status": asset.status,
        "page_url": reverse("asset", args=[asset.id]),
    }


def read_upload(file: Any) -> bytes:
    """The bytes of the ``image`` a verify request sent, or InvalidInput (400)."""
    if file is None or not hasattr(file, "read"):
        raise InvalidInput("Choose an image file to verify.", {"image": ["This field is required."]})
    limit = int(settings.STUDIO_UPLOAD_MAX_BYTES)
    data: bytes = file.read(limit + 1)
    if len(data) > limit:
        message = f"The file is too large (at most {limit // (1024 * 1024)} MB)."
        raise InvalidInput(message, {"image": [message]})
    if not data:
        raise InvalidInput(NOT_READABLE, {"image": [NOT_READABLE]})
    return data


def _when(value: Any) -> str:
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def _review_summary(review: dict[str, Any] | None) -> str | None:
    """ "Approved by alice on 2026-12-01 07:15 UTC; exported by bob on …" for an export's review."""
    if not review:
        return None
    parts = []
    if review.get("approved_by"):
        parts.append(f"Approved by {review['approved_by']} on {_when(review.get('approved_at'))}")
    else:
        parts.append(f"Not approved (status: {str(review.get('status', '')).replace('_', ' ')})")
    if review.get("exported_by"):
        parts.append(f"exported by {review['exported_by']} on {_when(review.get('exported_at'))}")
    return "; ".join(parts)


def verify(user: Any, data: bytes) -> dict[str, Any]:
    """What an image's credentials say, checked against the studio's trust anchors, and which asset of a
    project the user can see it is (by sha256) or was made from (by the signed chain), and no more."""
    mime = _sniff(data)
    try:
        report = credentials.read(data, mime)
    except ValueError as exc:
        raise InvalidInput(NOT_READABLE, {"image": [NOT_READABLE]}) from exc
    visible = assets_visible_to(user).select_related("project")
    match = visible.filter(sha256=report.sha256).first()
    linked: dict[str, Asset] = {}
    if report.state == "trusted":  # only the studio's own signature vouches for a link to its assets
        labels = [step.label for step in report.chain]
        linked = {a.manifest_label: a for a in visible.filter(manifest_label__in=labels)}
    chain = []
    for step in report.chain:
        found = linked.get(step.label)
        chain.append(
            {
                "title": step.title,
                "generator": step.generator,
                "actions": step.actions,
                "source_type": step.source_type,
                "signed_by": step.signer,
                "author": step.author,
                "project": step.project,
                "model": step.model,
                "parameters": step.parameters,
                "review": step.review,
                "review_summary": _review_summary(step.review),
                "asset": _asset_ref(found) if found else None,
            }
        )
    return {
        "credentials": report.has_credentials,
        "state": report.state,
        "valid": report.state in ("trusted", "valid"),
        "trusted": report.state == "trusted",
        "summary": report.summary,
        "problems": report.problems,
        "sha256": report.sha256,
        "made_by": chain[0] if chain else None,
        "chain": chain,
        "match": _asset_ref(match) if match else None,
        "made_from": next((step["asset"] for step in chain if step["asset"]), None) if not match else None,
    }
