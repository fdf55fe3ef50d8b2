"""Generation jobs: a row with explicit states and conditional transitions.

``queued → running → succeeded | failed | canceled``; terminal states are final. Every transition is an
UPDATE ... WHERE on the current state (and, for a running job, on its attempt number), so a task delivered
twice, or a worker that comes back after the sweeper gave its job to another, changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import F
from django.utils import timezone


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


TERMINAL_STATES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("studio.Project", on_delete=models.CASCADE, related_name="jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="jobs")
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    model_id = models.CharField(max_length=100)
    params = models.JSONField()
    queue = models.CharField(max_length=50)
    progress_step = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    attempt = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    # The worker the web chose for a queued job (generation/fleet.py): its message went to that worker's own
    # queue. Empty: sent to the pool's queue, for any worker that can run it (or waiting for one).
    routed_to = models.CharField(max_length=200, blank=True)
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    # What happened to the job while it waited, in a sentence for the people watching it (its worker was
    # lost and it was queued again, the queue was lost and it was sent again); empty when nothing did.
    notice = models.CharField(max_length=300, blank=True)
    gpu_seconds = models.FloatField(default=0)
    # What the job holds against its author's and its project's quotas until it settles.
    quota_period_start = models.DateTimeField(null=True, blank=True)
    reserved_images = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    enqueued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "-created_at", "-id"], name="job_project_recent"),
            models.Index(fields=["status", "queue", "created_at"], name="job_status_queue"),
        ]

    def __str__(self) -> str:
        return f"job {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATES

    # --- transitions: each returns whether it happened --

    @classmethod
    def claim(cls, job_id: Any, worker: str, now: datetime | None = None) -> int | None:
        """queued → running. Returns the new attempt number, or None if the job was not queued."""
        now = now or timezone.now()
        updated = cls.objects.filter(id=job_id, status=JobStatus.QUEUED, cancel_requested=False).update(
            status=JobStatus.RUNNING,
            worker=worker,
            attempt=F("attempt") + 1,
            started_at=now,
            heartbeat_at=now,
            progress_step=0,
        )
        if not updated:
            return None
        return cls.objects.filter(id=job_id).values_list("attempt", flat=True).get()

    @classmethod
    def running(cls, job_id: Any, attempt: int) -> models.QuerySet[Job]:
        return cls.objects.filter(id=job_id, status=JobStatus.RUNNING, attempt=attempt)

    @classmethod
    def finish(cls, job_id: Any, attempt: int, status: str, **fields: Any) -> bool:
        """running (this attempt) → a terminal state."""
        assert status in TERMINAL_STATES
        return bool(cls.running(job_id, attempt).update(status=status, finished_at=timezone.now(), **fields))

    @classmethod
    def cancel_queued(cls, job_id: Any) -> bool:
        """queued → canceled."""
        return bool(
            cls.objects.filter(id=job_id, status=JobStatus.QUEUED).update(
                status=JobStatus.CANCELED, cancel_requested=True, finished_at=timezone.now()
            )
        )

    @classmethod
    def request_cancel(cls, job_id: Any) -> bool:
        """Flag a running job; its worker stops it at the next step."""
        return bool(cls.objects.filter(id=job_id, status=JobStatus.RUNNING).update(cancel_requested=True))

    @classmethod
    def forget_prompts(cls, job_id: Any) -> bool:
        """Blank a finished job's prompt and negative prompt (every image it made was deleted: what was
        asked for goes too). Its other parameters stay, for its history and usage."""
        with transaction.atomic():
            job = cls.objects.select_for_update().filter(id=job_id, status__in=TERMINAL_STATES).first()
            if job is None:
                return False
            params = dict(job.params, prompt="", negative_prompt="")
            return bool(cls.objects.filter(id=job_id).update(params=params))

    @classmethod
    def requeue(cls, job_id: Any, attempt: int, notice: str = "") -> bool:
        """running (a dead worker's attempt) → queued, to be picked up again."""
        return bool(
            cls.running(job_id, attempt).update(
                status=JobStatus.QUEUED,
                worker="",
                routed_to="",
                enqueued_at=timezone.now(),
                progress_step=0,
                notice=notice,
            )
        )


class A1111Options(models.Model):
    """The AUTOMATIC1111 API's options of one API token (``POST /sdapi/v1/options``): kept per token, so each
    tool's choice of model is its own and never the whole studio's."""

    token = models.OneToOneField("studio.ApiToken", on_delete=models.CASCADE, related_name="a1111_options")
    sd_model_checkpoint = models.CharField(max_length=100, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"A1111 options of token {self.token_id}"


# --- project styles --


STYLE_FIELDS = (
    "prompt_prefix",
    "prompt_suffix",
    "negative_prompt",
    "model",
    "loras",
    "references",
    "controlnets",
)
"""The fields of a style that a lead may lock (a locked one cannot be changed by a job)."""


class Style(models.Model):
    """A project's named style. Its content lives in versions: an edit adds one, so an asset made with an
    older version still names what it was made with. A deleted style is only marked, for the same reason."""

    project = models.ForeignKey("studio.Project", on_delete=models.CASCADE, related_name="styles")
    name = models.CharField(max_length=100)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    deleted = models.BooleanField(default=False)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"],
                condition=models.Q(deleted=False),
                name="style_name_unique_among_live",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def current(self) -> StyleVersion:
        """The newest version (every style has at least one)."""
        return self.versions.order_by("-number").first()  # type: ignore[return-value]


class StyleVersion(models.Model):
    """One version of a style, never changed once written."""

    style = models.ForeignKey(Style, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    prompt_prefix = models.TextField(blank=True, default="")
    prompt_suffix = models.TextField(blank=True, default="")
    negative_prompt = models.TextField(blank=True, default="")
    model = models.CharField(max_length=200, blank=True, default="")
    loras = models.JSONField(default=list)  # [{"id", "weight"}]
    references = models.JSONField(default=list)  # asset ids of the project (jobs' reference images)
    controlnet_defaults = models.JSONField(default=list)  # [{"control", "id", "image", "weight", ...}]
    locks = models.JSONField(default=list)  # names among STYLE_FIELDS
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["style", "number"]
        constraints = [
            models.UniqueConstraint(fields=["style", "number"], name="style_version_number_unique")
        ]

    def __str__(self) -> str:
        return f"{self.style.name} v{self.number}"
