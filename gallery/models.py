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


def asset_upload_to(asset: Asset, filename: str) -> str:
    return f"assets/{asset.project_id}/{asset.created_at:%Y/%m}/{asset.id}.png"


class Asset(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("studio.Project", on_delete=models.CASCADE, related_name="assets")
    job = models.ForeignKey("generation.Job", on_delete=models.SET_NULL, null=True, related_name="assets")
    index = models.PositiveSmallIntegerField(default=0)
    file = models.FileField(upload_to=asset_upload_to, max_length=300)
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
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="assets")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at", "-id"], name="asset_project_recent")]
        constraints = [
            # One set of assets per job, however often its task runs.
            models.UniqueConstraint(fields=["job", "index"], name="unique_asset_per_job_index"),
        ]

    def __str__(self) -> str:
        return f"asset {self.id}"
