"""Writes in the gallery."""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone
from PIL import Image

from generation import realtime
from generation.models import Job
from studio import audit
from studio import permissions as studio_permissions
from studio.errors import Conflict, InvalidInput, NotAllowed
from studio.models import Project
from studio.signals import Removal, project_deleting

from .models import (
    BOARD_NAME_MAX,
    DECISION_STATUS,
    TAG_NAME_MAX,
    Asset,
    AssetKind,
    AssetStatus,
    AssetTag,
    Board,
    BoardItem,
    Comment,
    ControlMap,
    Decision,
    Favourite,
    Notification,
    NotificationKind,
    Review,
    Tag,
)
from .permissions import (
    can_comment,
    can_curate,
    can_delete,
    can_delete_board,
    can_export,
    can_favourite,
    can_review,
    can_submit,
)
from .pngmeta import png_with_provenance
from .provenance import sign_generated
from .serializers import asset_to_dict, review_to_dict
from .storage import open_plaintext

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = 256


def make_thumbnail(image: Image.Image) -> bytes:
    """A JPEG of at most THUMBNAIL_SIZE px on its longer side (never upscaled) for gallery grids."""
    thumb = image.convert("RGB")
    thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=85, optimize=True)
    return buffer.getvalue()


def asset_storage() -> Storage:
    """Where assets' files live (the default storage: filesystem, or S3/MinIO)."""
    return Asset._meta.get_field("file").storage


def delete_stored_files(names: list[str]) -> None:
    """Remove files from the default storage, best effort: a file that is already gone, or a storage that
    fails, is logged and never undoes the database change that made the file an orphan."""
    for name in names:
        if not name:
            continue
        try:
            asset_storage().delete(name)
        except Exception:
            logger.exception("could not delete %s from storage", name)


def do_create_job_assets(
    job: Any,
    images: list[Image.Image],
    seeds: list[int],
    *,
    model_name: str,
    model_sha256: str,
    control_maps: list[Image.Image] | None = None,
) -> list[Asset]:
    """Store a finished job's images as assets. Call inside the transaction that marks the job succeeded;
    the (job, index) constraint makes a second call for the same job fail instead of duplicating.

    An image made from another (img2img, inpainting, variation, upscale) records it as its parent when it
    still exists, and an inpainted one keeps a copy of its mask beside its PNG. The control maps of the job's
    ControlNet units (one per unit, in order) are stored once and linked to each image; each image's
    provenance names its units with their maps' sha256."""
    assets = []
    saved_files: list[str] = []
    parent = _job_parent(job)
    mask_png = _job_mask(job)
    parent_png = _stored_bytes(str(parent.file.name)) if parent is not None and parent.file else None
    try:
        maps = _store_control_maps(job, control_maps or [], saved_files)
        units = [
            {**unit, "map_sha256": maps[i].sha256} if i < len(maps) else dict(unit)
            for i, unit in enumerate(job.params.get("controlnets") or [])
        ]
        for index, (image, seed) in enumerate(zip(images, seeds, strict=True)):
            params = dict(job.params, seed=seed, num_images=1)
            if units:
                params["controlnets"] = units
            asset = Asset(
                project_id=job.project_id,
                job=job,
                index=index,
                kind=AssetKind.GENERATED,
                parent=parent,
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
            provenance = {
                "model": job.model_id,
                "model_name": model_name,
                "model_sha256": model_sha256,
                "job": str(job.id),
                "asset": str(asset.id),
                "project": job.project.slug,
                "created_by": job.created_by.username,
            }
            if job.params.get("init_asset"):
                provenance["parent"] = str(job.params["init_asset"])
            if units:
                provenance["controlnets"] = units
            data = png_with_provenance(image, params, provenance)
            data = sign_generated(
                asset, data, parent_png=parent_png, project=job.project, author=job.created_by.username
            )
            asset.sha256 = hashlib.sha256(data).hexdigest()
            asset.file.save(f"{asset.id}.png", ContentFile(data), save=False)
            saved_files.append(str(asset.file.name))
            asset.file_size = len(data)
            asset.thumbnail.save(f"{asset.id}.thumb.jpg", ContentFile(make_thumbnail(image)), save=False)
            saved_files.append(str(asset.thumbnail.name))
            if mask_png is not None:
                asset.mask.save(f"{asset.id}.mask.png", ContentFile(mask_png), save=False)
                saved_files.append(str(asset.mask.name))
            asset.save()
            if maps:
                asset.control_maps.add(*maps)
            assets.append(asset)
    except Exception:
        # The transaction rolls the rows back; take the files with it.
        delete_stored_files(saved_files)
        raise
    return assets


def _store_control_maps(job: Any, images: list[Image.Image], saved_files: list[str]) -> list[ControlMap]:
    """The job's control maps as rows and PNGs (one per ControlNet unit), their names added to
    ``saved_files``."""
    units = job.params.get("controlnets") or []
    maps = []
    for unit, image in enumerate(images):
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG", compress_level=4)
        png = buffer.getvalue()
        source = None
        if unit < len(units):
            try:
                source = Asset.objects.filter(
                    project_id=job.project_id, pk=uuid.UUID(units[unit]["image"])
                ).first()
            except (KeyError, ValueError):
                source = None
        control_map = ControlMap(
            project_id=job.project_id,
            job=job,
            unit=unit,
            sha256=hashlib.sha256(png).hexdigest(),
            width=image.width,
            height=image.height,
            source=source,
            created_at=timezone.now(),
        )
        control_map.file.save(f"{control_map.id}.png", ContentFile(png), save=False)
        saved_files.append(str(control_map.file.name))
        control_map.save()
        maps.append(control_map)
    return maps


def drop_orphaned_control_maps(map_ids: list[Any]) -> list[str]:
    """Delete the control maps among ``map_ids`` that no image links any more (call inside the transaction
    that deleted the images); returns their files' names, for deleting once it commits."""
    orphans = ControlMap.objects.filter(id__in=map_ids, assets__isnull=True)
    names = [name for name in orphans.values_list("file", flat=True) if name]
    orphans.delete()
    return names


def _job_parent(job: Any) -> Asset | None:
    """The job's start image, if it has one and it is still in the job's project."""
    raw = job.params.get("init_asset")
    if not raw:
        return None
    try:
        return Asset.objects.filter(project_id=job.project_id, pk=uuid.UUID(str(raw))).first()
    except ValueError:
        return None


def _job_mask(job: Any) -> bytes | None:
    """The bytes of the job's stored inpainting mask, if it has one."""
    name = job.params.get("mask")
    if not name:
        return None
    return _stored_bytes(name)


def _stored_bytes(name: str) -> bytes:
    with open_plaintext(name, asset_storage()) as f:
        data: bytes = f.read()
    return data


# --- uploads --

UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP")
NOT_AN_IMAGE = "That file is not an image we can read (PNG, JPEG or WebP)."


def upload_max_bytes() -> int:
    return int(settings.STUDIO_UPLOAD_MAX_BYTES)


def upload_max_pixels() -> int:
    return int(settings.STUDIO_UPLOAD_MAX_PIXELS)


def decode_image(
    data: bytes, *, field: str, formats: tuple[str, ...], max_pixels: int, not_readable: str
) -> Image.Image:
    """Decode untrusted bytes into a fully loaded image, or InvalidInput (400) naming ``field``.

    Only the given formats' decoders are tried; the header's size is checked against ``max_pixels`` before
    any pixel is decoded; the file is verified, then opened again and loaded (``verify`` leaves the image
    unusable), so a truncated or corrupt file is refused here rather than later."""
    try:
        with Image.open(io.BytesIO(data), formats=list(formats)) as probe:
            width, height = probe.size
            if width * height > max_pixels:
                raise InvalidInput(
                    f"The image is too large: {width} × {height} pixels (at most "
                    f"{max_pixels / 1_000_000:.1f} megapixels).",
                    {field: [f"At most {max_pixels / 1_000_000:.1f} megapixels."]},
                )
            probe.verify()
        image = Image.open(io.BytesIO(data), formats=list(formats))
        image.load()
    except InvalidInput:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise InvalidInput(not_readable, {field: [not_readable]}) from exc
    return image


def flatten_to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels only: upright as the camera meant (EXIF orientation applied), transparency laid on white."""
    from PIL import ImageOps

    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def check_upload(user: Any, project: Project) -> None:
    if not studio_permissions.can_generate(user, project):
        raise NotAllowed("Only the project's artists, leads and site admins may upload images.")


def do_upload_image(actor: Any, project: Project, file: Any, *, ip: str | None = None) -> Asset:
    """Store an uploaded image as an asset of kind ``upload`` (a start image for the generation modes).

    The file is decoded and written again as a plain PNG, so nothing but its pixels is kept: no EXIF or
    other metadata, nothing appended after the image. Refused with a clear 400 when missing, too big in
    bytes or pixels, or not a PNG, JPEG or WebP image. Uploads count against no quota."""
    check_upload(actor, project)
    if file is None or not hasattr(file, "read"):
        raise InvalidInput("Choose an image file to upload.", {"image": ["This field is required."]})
    limit = upload_max_bytes()
    size = getattr(file, "size", None)
    data = file.read(limit + 1) if size is None or size <= limit else b""
    if (size is not None and size > limit) or len(data) > limit:
        raise InvalidInput(
            f"The file is too large (at most {limit // (1024 * 1024)} MB).",
            {"image": [f"At most {limit // (1024 * 1024)} MB."]},
        )
    if not data:
        raise InvalidInput(NOT_AN_IMAGE, {"image": [NOT_AN_IMAGE]})
    decoded = decode_image(
        data, field="image", formats=UPLOAD_FORMATS, max_pixels=upload_max_pixels(), not_readable=NOT_AN_IMAGE
    )
    original_format = decoded.format or ""
    image = flatten_to_rgb(decoded)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=4)
    png = buffer.getvalue()
    name = str(getattr(file, "name", "") or "")
    asset = Asset(
        project=project,
        kind=AssetKind.UPLOAD,
        width=image.width,
        height=image.height,
        seed=0,
        prompt="",
        params={"kind": AssetKind.UPLOAD.value, "filename": name[-200:], "format": original_format},
        model_id="",
        model_name="Uploaded image",
        model_sha256="",
        created_by=actor,
        created_at=timezone.now(),
    )
    saved: list[str] = []
    try:
        with transaction.atomic():
            asset.sha256 = hashlib.sha256(png).hexdigest()
            asset.file.save(f"{asset.id}.png", ContentFile(png), save=False)
            saved.append(str(asset.file.name))
            asset.file_size = len(png)
            asset.thumbnail.save(f"{asset.id}.thumb.jpg", ContentFile(make_thumbnail(image)), save=False)
            saved.append(str(asset.thumbnail.name))
            asset.save()
            audit.record(
                actor,
                audit.ASSET_UPLOAD,
                target=f"asset:{asset.id}",
                project=project,
                ip=ip,
                details={"bytes": len(png), "width": image.width, "height": image.height},
            )
            _send_after_commit(project.slug, {"type": realtime.ASSET_CREATED, "asset": asset_to_dict(asset)})
    except Exception:
        delete_stored_files(saved)
        raise
    logger.info("asset %s uploaded to %s by %s (%s bytes)", asset.id, project.slug, actor, len(png))
    return asset


# --- deletion --


def check_delete_asset(user: Any, asset: Asset) -> None:
    """NotAllowed (403) unless the user may delete this (visible) asset."""
    if not can_delete(user, asset):
        raise NotAllowed("Only the project's leads and site admins may delete images.")


def do_delete_asset(actor: Any, asset: Asset, *, ip: str | None = None) -> None:
    """Delete the asset's row and audit it; its PNG, thumbnail and mask (and the control maps no other image
    links) leave storage once the deletion commits (so a rolled-back deletion never loses the files), and the
    project stream hears of it then.
    The job's prompts go too when this was the job's last image."""
    check_delete_asset(actor, asset)
    names = [str(asset.file.name or ""), str(asset.thumbnail.name or ""), str(asset.mask.name or "")]
    asset_id, project = str(asset.id), asset.project
    with transaction.atomic():
        map_ids = list(asset.control_maps.values_list("id", flat=True))
        asset.delete()
        names += drop_orphaned_control_maps(map_ids)
        _forget_job_prompts_if_empty(asset.job_id)
        audit.record(
            actor,
            audit.ASSET_DELETE,
            target=f"asset:{asset_id}",
            project=project,
            ip=ip,
            details={"job": str(asset.job_id) if asset.job_id else None, "status": asset.status},
        )
        transaction.on_commit(lambda: delete_stored_files(names))
        _send_after_commit(project.slug, {"type": realtime.ASSET_DELETED, "asset": {"id": asset_id}})


def _forget_job_prompts_if_empty(job_id: Any) -> None:
    """A job whose images are all deleted keeps no prompt either (its row stays, for usage and history)."""
    if job_id and not Asset.objects.filter(job_id=job_id).exists():
        Job.forget_prompts(job_id)


@receiver(project_deleting, dispatch_uid="gallery.services.project_deleting")
def _project_deleting(sender: Any, project: Project, dry_run: bool = False, **kwargs: Any) -> Removal:
    """A project is being deleted: its assets' files go with it (its rows go by cascade)."""
    assets = Asset.objects.filter(project=project)
    counts = {"assets": assets.count(), "boards": Board.objects.filter(project=project).count()}
    if dry_run:
        return Removal(counts=counts)
    folder = f"assets/{project.pk}/"  # where asset_upload_to puts every file of the project
    elsewhere = [
        name
        for field in ("file", "thumbnail", "mask")
        for name in assets.exclude(**{f"{field}__startswith": folder}).values_list(field, flat=True)
        if name
    ]
    maps = ControlMap.objects.filter(project=project).exclude(file__startswith=folder)
    elsewhere += [name for name in maps.values_list("file", flat=True) if name]
    return Removal(storage_names=[folder, *elsewhere], counts=counts)


# --- export --

EXPORT_ALL = "all"


@dataclass(frozen=True)
class ExportPlan:
    """What one export holds, fixed when it starts: the asset ids in order and the announced sizes."""

    project: Project
    status: str  # an asset status, "all", or "selected"
    asset_ids: list[uuid.UUID]
    png_bytes: int
    exported_by: str = ""  # named in each exported file's Content Credentials


def check_export(user: Any, project: Project, status: str | None, ids: str | None) -> ExportPlan:
    """Authorize and validate an export of a (visible) project's assets.

    ``status`` is an asset status or ``all`` (default: ``approved``, or ``all`` when ``ids`` is given);
    ``ids`` is an optional comma-separated list of asset ids of this project. NotAllowed (403) for
    non-leads; InvalidInput (400) for an unknown status, a malformed id or an id not in the project.
    """
    if not can_export(user, project):
        raise NotAllowed("Only the project's leads and site admins may export images.")
    status = (status or "").strip() or (EXPORT_ALL if ids else AssetStatus.APPROVED.value)
    if status != EXPORT_ALL and status not in AssetStatus.values:
        choices = ", ".join([*AssetStatus.values, EXPORT_ALL])
        raise InvalidInput("Unknown status.", {"status": [f"Choose one of {choices}."]})
    queryset = Asset.objects.filter(project=project)
    if status != EXPORT_ALL:
        queryset = queryset.filter(status=status)
    label = status
    if ids is not None:
        try:
            wanted = {uuid.UUID(part.strip()) for part in ids.split(",") if part.strip()}
        except ValueError as exc:
            raise InvalidInput("Bad ids.", {"ids": ["Give asset ids separated by commas."]}) from exc
        if not wanted:
            raise InvalidInput("Bad ids.", {"ids": ["Give at least one asset id."]})
        known = set(Asset.objects.filter(project=project, id__in=wanted).values_list("id", flat=True))
        if wanted - known:
            raise InvalidInput(
                "Some ids are not images of this project.",
                {"ids": [f"Not in this project: {', '.join(sorted(str(i) for i in wanted - known))}."]},
            )
        queryset = queryset.filter(id__in=wanted)
        label = "selected" if status == EXPORT_ALL else f"selected-{status}"
    rows = list(queryset.order_by("created_at", "id").values_list("id", "file_size", "file"))
    png_bytes = 0
    for _, size, name in rows:
        if size is None:
            # Assets from before sizes were recorded: ask the storage (one HEAD per object on S3).
            try:
                size = asset_storage().size(name)
            except Exception:
                size = 0
        png_bytes += size
    return ExportPlan(
        project=project,
        status=label,
        asset_ids=[r[0] for r in rows],
        png_bytes=png_bytes,
        exported_by=user.get_username(),
    )


def do_record_export(actor: Any, plan: ExportPlan, *, ip: str | None = None) -> None:
    """Audit an export as it starts (a download the client abandons half-way was still handed out)."""
    audit.record(
        actor,
        audit.ASSET_EXPORT,
        target=f"project:{plan.project.slug}",
        project=plan.project,
        ip=ip,
        details={"count": len(plan.asset_ids), "status": plan.status},
    )


# --- reviews, comments, notifications --

SUBMITTABLE = (AssetStatus.DRAFT, AssetStatus.CHANGES_REQUESTED)
COMMENT_MAX = 5000


def _locked(asset: Asset) -> Asset:
    """The asset's row, locked until the transaction ends (PostgreSQL), with what serializing it needs."""
    return (
        Asset.objects.select_for_update(of=("self",)).select_related("project", "created_by").get(pk=asset.pk)
    )


def _transition(asset: Asset, allowed: tuple[str, ...], new: str) -> bool:
    """A conditional UPDATE: of two concurrent transitions from the same state exactly one wins, even on a
    database without row locks."""
    changed = Asset.objects.filter(pk=asset.pk, status__in=allowed).update(status=new)
    if changed:
        asset.status = new
    return bool(changed)


def _send_after_commit(slug: str, payload: dict[str, Any]) -> None:
    transaction.on_commit(lambda: realtime.send_project_event(slug, payload))


def check_submit(user: Any, asset: Asset) -> None:
    if not can_submit(user, asset):
        raise NotAllowed("Only the image's author and the project's leads may submit it for review.")


def do_submit(actor: Any, asset: Asset) -> Asset:
    """Submit a draft (or an asset with changes requested) for review: 403 for those who may not, 409 when
    the asset is in any other state. Returns the fresh asset; the project stream hears of it on commit."""
    check_submit(actor, asset)
    with transaction.atomic():
        asset = _locked(asset)
        if not _transition(asset, SUBMITTABLE, AssetStatus.SUBMITTED):
            raise Conflict(
                f"Only drafts and images with changes requested can be submitted; this one is "
                f"{asset.get_status_display().lower()}."
            )
        payload = {"type": realtime.ASSET_SUBMITTED, "asset": asset_to_dict(asset)}
        _send_after_commit(asset.project.slug, payload)
    return asset


def do_submit_many(actor: Any, project: Project, ids: list[str]) -> tuple[int, int]:
    """Submit several of the project's assets (the gallery's selection). Each is submitted on its own, so one
    the actor may not submit, or one already submitted, is skipped without undoing the others. Returns
    (submitted, skipped)."""
    submitted = skipped = 0
    wanted: set[uuid.UUID] = set()
    for raw in ids:
        try:
            wanted.add(uuid.UUID(raw))
        except ValueError:
            skipped += 1
    found = Asset.objects.filter(project=project, id__in=wanted).select_related("project", "created_by")
    skipped += len(wanted) - len(found)
    for asset in found:
        try:
            do_submit(actor, asset)
        except (NotAllowed, Conflict):
            skipped += 1
        else:
            submitted += 1
    return submitted, skipped


def check_review(user: Any, asset: Asset, decision: Any, comment: Any) -> tuple[str, str]:
    """Authorize (403) and validate (400) a decision; returns the clean (decision, comment)."""
    if not can_review(user, asset):
        raise NotAllowed("Only the project's leads and site admins may review images.")
    if decision not in Decision.values:
        raise InvalidInput(
            "Unknown decision.", {"decision": [f"Choose one of {', '.join(Decision.values)}."]}
        )
    if comment is None:
        comment = ""
    if not isinstance(comment, str):
        raise InvalidInput("The comment must be text.", {"comment": ["Must be a string."]})
    comment = comment.strip()
    if len(comment) > COMMENT_MAX:
        raise InvalidInput("The comment is too long.", {"comment": [f"At most {COMMENT_MAX} characters."]})
    return str(decision), comment


def do_review(
    actor: Any, asset: Asset, decision: Any, comment: Any = "", *, ip: str | None = None
) -> tuple[Asset, Review]:
    """Decide on a submitted asset: 403 / 400 as ``check_review``; 409 unless the asset is submitted (so of
    two leads deciding at once, one decision stands and the other is told). Records the decision in the
    history, audits it (the decision, never the comment), notifies the author, and tells the project stream
    on commit."""
    decision, comment = check_review(actor, asset, decision, comment)
    with transaction.atomic():
        asset = _locked(asset)
        new_status = DECISION_STATUS[Decision(decision)]
        if not _transition(asset, (AssetStatus.SUBMITTED,), new_status):
            raise Conflict(
                f"Only submitted images can be reviewed; this one is {asset.get_status_display().lower()}."
            )
        review = Review.objects.create(asset=asset, decision=decision, comment=comment, by=actor)
        audit.record(
            actor,
            audit.ASSET_REVIEW,
            target=f"asset:{asset.id}",
            project=asset.project,
            ip=ip,
            details={"asset": str(asset.id), "decision": decision},
        )
        if asset.created_by_id != actor.pk:  # nobody needs telling what they just did themselves
            Notification.objects.create(
                user_id=asset.created_by_id,
                kind=NotificationKind.ASSET_REVIEWED,
                asset=asset,
                project=asset.project,
                text=f"{actor.get_username()}: {Decision(decision).label.lower()} — your image in "
                f"{asset.project.name}"[:300],
            )
        _send_after_commit(
            asset.project.slug,
            {
                "type": realtime.ASSET_REVIEWED,
                "asset": asset_to_dict(asset),
                "review": review_to_dict(review),
            },
        )
    return asset, review


def do_comment(actor: Any, asset: Asset, text: Any) -> Comment:
    """Add a comment (1..COMMENT_MAX characters) to an asset the actor sees."""
    if not can_comment(actor, asset):
        raise NotAllowed("You may not comment on this image.")
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("Write a comment.", {"text": ["This field is required."]})
    text = text.strip()
    if len(text) > COMMENT_MAX:
        raise InvalidInput("The comment is too long.", {"text": [f"At most {COMMENT_MAX} characters."]})
    return Comment.objects.create(asset=asset, author=actor, text=text)


def do_mark_notifications_read(user: Any) -> int:
    """Mark all the user's unread notifications read; returns how many were."""
    return Notification.objects.filter(user=user, read_at__isnull=True).update(read_at=timezone.now())


# --- boards, tags, favourites --


def check_curate(user: Any, project: Project) -> None:
    """NotAllowed (403) unless the user may change the project's boards and tags (artists, leads, admins)."""
    if not can_curate(user, project):
        raise NotAllowed("Only the project's artists, leads and site admins may change boards and tags.")


def _clean_name(value: Any, field: str, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"Give the {what} a name.", {field: ["This field is required."]})
    value = " ".join(value.split())  # no stray or doubled whitespace in names people pick from lists
    if len(value) > limit:
        raise InvalidInput(f"The {what} name is too long.", {field: [f"At most {limit} characters."]})
    return value


def _project_asset(project: Project, asset: Any, field: str = "asset") -> Asset:
    """The asset (an Asset or an id) if it belongs to the project; InvalidInput (400) otherwise, with the same
    answer for a malformed id, another project's image and one that does not exist (so nothing leaks)."""
    raw = asset.pk if isinstance(asset, Asset) else asset
    found = None
    if raw:
        try:
            found = Asset.objects.filter(project=project, pk=uuid.UUID(str(raw))).first()
        except ValueError:
            found = None
    if found is None:
        raise InvalidInput(
            "That image is not in this project.", {field: ["Give the id of an image of this project."]}
        )
    return found


def do_create_board(actor: Any, project: Project, name: Any) -> Board:
    """Create a board in the project: 403 for viewers, 400 for an empty, too long or taken name."""
    check_curate(actor, project)
    name = _clean_name(name, "name", "board", BOARD_NAME_MAX)
    with transaction.atomic():
        if Board.objects.filter(project=project, name__iexact=name).exists():
            raise InvalidInput(
                f"There is already a board called “{name}” in this project.",
                {"name": ["Choose another name."]},
            )
        return Board.objects.create(project=project, name=name, created_by=actor)


def do_add_to_board(actor: Any, board: Board, asset: Any) -> BoardItem:
    """Put one of the board's project's images (an Asset or an id) on the board; adding it twice is harmless.
    403 for viewers, 400 for an image of another project."""
    check_curate(actor, board.project)
    found = _project_asset(board.project, asset)
    item, _ = BoardItem.objects.get_or_create(board=board, asset=found, defaults={"added_by": actor})
    return item


def do_remove_from_board(actor: Any, board: Board, asset: Any) -> bool:
    """Take an image off the board; returns whether it was on it."""
    check_curate(actor, board.project)
    found = _project_asset(board.project, asset)
    deleted, _ = BoardItem.objects.filter(board=board, asset=found).delete()
    return bool(deleted)


def do_delete_board(actor: Any, board: Board) -> None:
    """Delete a board (never its images): the project's leads and site admins."""
    if not can_delete_board(actor, board):
        raise NotAllowed("Only the project's leads and site admins may delete boards.")
    board.delete()


def clean_tag(name: Any) -> str:
    """A tag name as stored: trimmed, single-spaced, lowercased, 1..TAG_NAME_MAX characters."""
    return _clean_name(name, "tag", "tag", TAG_NAME_MAX).lower()


def do_tag(actor: Any, asset: Asset, name: Any) -> Tag:
    """Tag an asset, creating the project's tag on first use; tagging twice is harmless."""
    check_curate(actor, asset.project)
    name = clean_tag(name)
    with transaction.atomic():
        tag, _ = Tag.objects.get_or_create(project_id=asset.project_id, name=name)
        AssetTag.objects.get_or_create(asset=asset, tag=tag, defaults={"added_by": actor})
    return tag


def do_untag(actor: Any, asset: Asset, name: Any) -> bool:
    """Remove a tag from an asset (the tag stays in the project's vocabulary); returns whether it had it."""
    check_curate(actor, asset.project)
    name = clean_tag(name)
    deleted, _ = AssetTag.objects.filter(asset=asset, tag__name=name).delete()
    return bool(deleted)


def do_favourite(actor: Any, asset: Asset) -> Favourite:
    """Star an asset for the actor alone (viewers too); starring twice is harmless."""
    if not can_favourite(actor, asset):
        raise NotAllowed("You may not star this image.")
    favourite, _ = Favourite.objects.get_or_create(user=actor, asset=asset)
    return favourite


def do_unfavourite(actor: Any, asset: Asset) -> bool:
    """Remove the actor's star; returns whether there was one."""
    deleted, _ = Favourite.objects.filter(user=actor, asset=asset).delete()
    return bool(deleted)
