"""Assets: generated images with their full provenance."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class AssetStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"


class Credentials(models.TextChoices):
    """Whether the PNG carries the studio's Content Credentials (C2PA)."""

    SIGNED = "signed", "Signed"
    UNSIGNED = "unsigned", "Signing failed"  # the image was kept; credentials_error says why
    NONE = "none", "Not signed"  # uploads, and images made before signing existed or with it switched off


class AssetKind(models.TextChoices):
    GENERATED = "generated", "Generated"
    UPLOAD = "upload", "Uploaded"


def asset_upload_to(asset: Asset, filename: str) -> str:
    return f"assets/{asset.project_id}/{asset.created_at:%Y/%m}/{asset.id}.png"


def thumbnail_upload_to(asset: Asset, filename: str) -> str:
    # Beside the PNG, so a prefix listing or a backup holds an asset's files together.
    return f"assets/{asset.project_id}/{asset.created_at:%Y/%m}/{asset.id}.thumb.jpg"


def mask_upload_to(asset: Asset, filename: str) -> str:
    return f"assets/{asset.project_id}/{asset.created_at:%Y/%m}/{asset.id}.mask.png"


class Asset(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("studio.Project", on_delete=models.CASCADE, related_name="assets")
    job = models.ForeignKey("generation.Job", on_delete=models.SET_NULL, null=True, related_name="assets")
    index = models.PositiveSmallIntegerField(default=0)
    kind = models.CharField(max_length=20, choices=AssetKind.choices, default=AssetKind.GENERATED)
    # The image this one was made from (img2img, inpainting, variations, upscales); kept when it is deleted.
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children"
    )
    file = models.FileField(upload_to=asset_upload_to, max_length=300)
    # A JPEG of at most 256 px for grids; empty for assets made before thumbnails existed (they fall back
    # to the full image).
    thumbnail = models.FileField(upload_to=thumbnail_upload_to, max_length=300, blank=True)
    # The inpainting mask the image was made with (white = repainted), a greyscale PNG; empty otherwise.
    mask = models.FileField(upload_to=mask_upload_to, max_length=300, blank=True)
    # The PNG's size in bytes, so an export can announce its size before streaming; null for older assets.
    file_size = models.PositiveBigIntegerField(null=True, blank=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    seed = models.BigIntegerField()
    prompt = models.TextField()
    negative_prompt = models.TextField(blank=True)
    params = models.JSONField()
    model_id = models.CharField(max_length=100)
    model_name = models.CharField(max_length=200)
    model_sha256 = models.CharField(max_length=64)
    status = models.CharField(max_length=20, choices=AssetStatus.choices, default=AssetStatus.DRAFT)
    # The stored PNG's sha256 (what the Verify page matches a dropped file by); empty for older assets.
    # Database defaults too, so rows written outside the ORM (bulk loads, the benchmark's COPY) need none.
    sha256 = models.CharField(max_length=64, blank=True, db_index=True, default="", db_default="")
    credentials = models.CharField(
        max_length=10, choices=Credentials.choices, default=Credentials.NONE, db_default=Credentials.NONE
    )
    credentials_error = models.CharField(max_length=500, blank=True, default="", db_default="")
    # The label of the C2PA manifest the studio signed the PNG with, to recognise it inside exports and
    # edits of it (their manifests carry it as an ingredient).
    manifest_label = models.CharField(max_length=100, blank=True, db_index=True, default="", db_default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="assets")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        # The gallery's keyset pages, unfiltered and per filter (gallery/queries.py); PostgreSQL scans them
        # backwards for the oldest-first order. The prompt's stored full-text vector and its GIN index are in
        # migration 0007 (PostgreSQL only).
        indexes = [
            models.Index(fields=["project", "-created_at", "-id"], name="asset_project_recent"),
            models.Index(
                fields=["project", "status", "-created_at", "-id"], name="asset_project_status_recent"
            ),
            models.Index(
                fields=["project", "created_by", "-created_at", "-id"], name="asset_project_author_recent"
            ),
            models.Index(
                fields=["project", "model_id", "-created_at", "-id"], name="asset_project_model_recent"
            ),
        ]
        constraints = [
            # One set of assets per job, however often its task runs.
            models.UniqueConstraint(fields=["job", "index"], name="unique_asset_per_job_index"),
        ]

    def __str__(self) -> str:
        return f"asset {self.id}"


def control_map_upload_to(control_map: ControlMap, filename: str) -> str:
    # In the project's folder (a project's deletion takes its whole folder), by job: one map per unit.
    return f"assets/{control_map.project_id}/{control_map.created_at:%Y/%m}/controls/{control_map.id}.png"


class ControlMap(models.Model):
    """The control map a ControlNet unit of a job steered with (the preprocessed control image, a PNG),
    stored once per job and unit and linked to every image the job made. Kept while one of them is: deleting
    the last one takes the map with it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("studio.Project", on_delete=models.CASCADE, related_name="control_maps")
    job = models.ForeignKey(
        "generation.Job", on_delete=models.SET_NULL, null=True, related_name="control_maps"
    )
    # Which of the job's ControlNet units (its index in the job's ``controlnets``).
    unit = models.PositiveSmallIntegerField()
    file = models.FileField(upload_to=control_map_upload_to, max_length=300)
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    # The image it was made from (an asset of the project); kept when that image is deleted.
    source = models.ForeignKey(Asset, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    assets = models.ManyToManyField(Asset, related_name="control_maps")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "unit"]
        constraints = [
            models.UniqueConstraint(fields=["job", "unit"], name="unique_control_map_per_job_unit")
        ]

    def __str__(self) -> str:
        return f"control map {self.unit} of job {self.job_id}"


class Decision(models.TextChoices):
    APPROVE = "approve", "Approved"
    REJECT = "reject", "Rejected"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"


# The status an asset takes on each decision.
DECISION_STATUS = {
    Decision.APPROVE: AssetStatus.APPROVED,
    Decision.REJECT: AssetStatus.REJECTED,
    Decision.CHANGES_REQUESTED: AssetStatus.CHANGES_REQUESTED,
}


class Review(models.Model):
    """One decision on a submitted asset. Kept as history: an asset resubmitted after "changes requested"
    gathers several."""

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="reviews")
    decision = models.CharField(max_length=20, choices=Decision.choices)
    comment = models.TextField(blank=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.decision} on {self.asset_id}"

    @property
    def resulting_status(self) -> str:
        """The status this decision gave the asset."""
        return str(DECISION_STATUS[Decision(self.decision)])


class Comment(models.Model):
    """A member's remark on an asset (any member who sees the asset may comment)."""

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="comments")
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"comment {self.pk} on {self.asset_id}"


class NotificationKind(models.TextChoices):
    ASSET_REVIEWED = "asset.reviewed", "Image reviewed"


class Notification(models.Model):
    """Something a user should know about; unread until ``read_at`` is set."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=40, choices=NotificationKind.choices)
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, null=True, related_name="notifications")
    project = models.ForeignKey("studio.Project", on_delete=models.CASCADE, related_name="notifications")
    text = models.CharField(max_length=300)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "read_at"], name="notification_user_unread")]

    def __str__(self) -> str:
        return f"notification {self.pk} for {self.user_id}"


# --- boards, tags, favourites --

BOARD_NAME_MAX = 100
TAG_NAME_MAX = 50


class Board(models.Model):
    """A named collection of a project's assets (a mood board, a shortlist) shared by its members."""

    project = models.ForeignKey("studio.Project", on_delete=models.CASCADE, related_name="boards")
    name = models.CharField(max_length=BOARD_NAME_MAX)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="boards")
    created_at = models.DateTimeField(default=timezone.now)
    assets = models.ManyToManyField(Asset, through="BoardItem", related_name="boards")

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="unique_board_name_per_project")
        ]

    def __str__(self) -> str:
        return self.name


class BoardItem(models.Model):
    board = models.ForeignKey(Board, on_delete=models.CASCADE, related_name="items")
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="board_items")
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-added_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["board", "asset"], name="unique_board_item")]

    def __str__(self) -> str:
        return f"{self.asset_id} on board {self.board_id}"


class Tag(models.Model):
    """A project's label for assets. Names are stored lowercased, so "Hero" and "hero" are one tag."""

    project = models.ForeignKey("studio.Project", on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=TAG_NAME_MAX)
    assets = models.ManyToManyField(Asset, through="AssetTag", related_name="tags")

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="unique_tag_name_per_project")
        ]

    def __str__(self) -> str:
        return self.name


class AssetTag(models.Model):
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="asset_tags")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="asset_tags")
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["asset", "tag"], name="unique_asset_tag")]

    def __str__(self) -> str:
        return f"{self.tag_id} on {self.asset_id}"


class Favourite(models.Model):
    """One user's star on an asset: personal, seen by nobody else."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="favourites")
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="favourites")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["user", "asset"], name="unique_favourite")]

    def __str__(self) -> str:
        return f"{self.user_id} ★ {self.asset_id}"
