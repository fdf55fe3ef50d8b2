"""The team layer: users, projects, memberships and API tokens."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A studio user. ``is_superuser`` makes a site admin."""

    @property
    def is_admin(self) -> bool:
        return self.is_active and self.is_superuser


class Role(models.TextChoices):
    LEAD = "lead", "Lead"
    ARTIST = "artist", "Artist"
    VIEWER = "viewer", "Viewer"


class Project(models.Model):
    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # Drafts and rejected images older than this many days are deleted by the daily purge; null keeps them.
    retention_days = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class TokenScope(models.TextChoices):
    """What an API token may do, each including the ones before it. Roles still decide inside the scope."""

    READ = "read", "Read: look at projects, jobs and images"
    GENERATE = "generate", "Generate: read, and run jobs, upload, review as your role allows"
    ADMIN = "admin", "Admin: everything, the admin API included"


SCOPE_ORDER = [TokenScope.READ, TokenScope.GENERATE, TokenScope.ADMIN]


class ApiToken(models.Model):
    """A bearer token. Only its SHA-256 is stored; the token itself is shown once, at creation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=12)
    digest = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=10, choices=TokenScope.choices, default=TokenScope.GENERATE)
    # The project that tools speaking the AUTOMATIC1111 API work in when they name none.
    default_project = models.ForeignKey(
        Project, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    def allows(self, scope: str) -> bool:
        """Whether this token's scope covers ``scope``."""
        return SCOPE_ORDER.index(TokenScope(self.scope)) >= SCOPE_ORDER.index(TokenScope(scope))


class UserSession(models.Model):
    """Which session belongs to whom, recorded at sign-in, so deactivating a user can end their sessions.

    Only the key is kept (no foreign key to ``django_session``), so it works with any session engine.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    session_key = models.CharField(max_length=40, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"session of {self.user_id}"


class AppendOnlyQuerySet(models.QuerySet):
    """Bulk writes bypass ``save()``/``delete()``: refuse them too. (PostgreSQL refuses them in a trigger.)"""

    def update(self, **kwargs: Any) -> int:
        raise PermissionError("Audit events are append-only.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise PermissionError("Audit events are append-only.")


class AuditEvent(models.Model):
    """An append-only record of who did what. Never updated or deleted by the application."""

    time = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)  # kept when the user is gone
    action = models.CharField(max_length=50, db_index=True)
    target = models.CharField(max_length=300, blank=True)
    project = models.ForeignKey(Project, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    project_slug = models.CharField(max_length=60, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-time", "-id"]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.target}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise PermissionError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise PermissionError("Audit events are append-only.")


class QuotaScope(models.TextChoices):
    USER_DEFAULT = "user_default", "Default for every user"
    PROJECT_DEFAULT = "project_default", "Default for every project"
    USER = "user", "One user"
    PROJECT = "project", "One project"


class QuotaLimit(models.Model):
    """A limit per period; ``None`` means unlimited. Overrides (user, project) win over the site defaults."""

    scope = models.CharField(max_length=20, choices=QuotaScope.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    images = models.PositiveIntegerField(null=True, blank=True)
    gpu_seconds = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["scope"],
                condition=models.Q(user__isnull=True, project__isnull=True),
                name="one_default_per_scope",
            ),
            models.UniqueConstraint(
                fields=["user"], condition=models.Q(scope="user"), name="one_limit_per_user"
            ),
            models.UniqueConstraint(
                fields=["project"], condition=models.Q(scope="project"), name="one_limit_per_project"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scope}: {self.images} images, {self.gpu_seconds} GPU-s"


class QuotaUsage(models.Model):
    """What a user or a project used (and holds reserved) in one period. Rows are locked while changed."""

    subject = models.CharField(max_length=10)  # "user" or "project"
    subject_id = models.BigIntegerField()
    period_start = models.DateTimeField()
    images_used = models.PositiveIntegerField(default=0)
    images_reserved = models.PositiveIntegerField(default=0)
    gpu_seconds_used = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["subject", "subject_id", "period_start"], name="one_usage_per_period"
            )
        ]

    def __str__(self) -> str:
        return f"{self.subject} {self.subject_id} from {self.period_start:%Y-%m-%d}"
