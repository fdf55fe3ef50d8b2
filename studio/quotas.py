"""Quotas: images and GPU-seconds per period, per user and per project.

A submit reserves its images atomically (the usage rows are locked while checked and changed); completion
settles with what was made and the measured GPU time; failure and cancellation release the reservation
(GPU time a canceled job did use is still counted). A limit of ``None`` is unlimited. GPU time cannot be known
before a job runs, so a GPU-seconds limit refuses new jobs once it is reached rather than reserving.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models import Q as models_q
from django.utils import timezone

from . import audit
from .boundary import validate
from .errors import InvalidInput, QuotaExceeded
from .models import Project, QuotaLimit, QuotaScope, QuotaUsage
from .schemas import QuotaIn

PERIOD_WORDS = {"month": "monthly", "week": "weekly", "day": "daily"}


def period_bounds(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The current quota period [start, end) in UTC."""
    now = (now or timezone.now()).astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    kind = settings.STUDIO_QUOTA_PERIOD
    if kind == "day":
        return day, day + timedelta(days=1)
    if kind == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    start = day.replace(day=1)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


@dataclass(frozen=True)
class Limits:
    images: int | None
    gpu_seconds: int | None


def _limits(default_scope: str, scope: str, **subject: Any) -> Limits:
    row = (
        QuotaLimit.objects.filter(scope=scope, **subject).first()
        or QuotaLimit.objects.filter(scope=default_scope, user__isnull=True, project__isnull=True).first()
    )
    return Limits(row.images, row.gpu_seconds) if row else Limits(None, None)


def user_limits(user: Any) -> Limits:
    return _limits(QuotaScope.USER_DEFAULT, QuotaScope.USER, user_id=user.pk)


def project_limits(project: Project) -> Limits:
    return _limits(QuotaScope.PROJECT_DEFAULT, QuotaScope.PROJECT, project_id=project.pk)


def _rows(
    subjects: list[tuple[str, int]], period_start: datetime, *, lock: bool
) -> dict[tuple[str, int], QuotaUsage]:
    QuotaUsage.objects.bulk_create(
        [QuotaUsage(subject=s, subject_id=i, period_start=period_start) for s, i in subjects],
        ignore_conflicts=True,
    )
    queryset = QuotaUsage.objects.filter(period_start=period_start)
    if lock:
        queryset = queryset.select_for_update()
    found = {}
    for subject, subject_id in sorted(subjects):  # a fixed lock order: no deadlocks between submits
        found[(subject, subject_id)] = queryset.get(subject=subject, subject_id=subject_id)
    return found


def _refusal(who: str, what: str, used: float, limit: int, reset: datetime) -> QuotaExceeded:
    period = PERIOD_WORDS[settings.STUDIO_QUOTA_PERIOD]
    unit = "images" if what == "images" else "GPU-seconds"
    owner = "Your" if who == "user" else "This project's"
    noun = "image quota" if what == "images" else "GPU time"
    shown = f"{used:g}" if what == "images" else f"{used:.0f}"
    sentence = (
        f"{owner} {period} {noun} is used up: {shown} of {limit} {unit} used; "
        f"it resets on {reset:%Y-%m-%d} at {reset:%H:%M} UTC."
    )
    return QuotaExceeded(
        sentence,
        extra={
            "quota": {
                "scope": who,
                "kind": what,
                "used": used,
                "limit": limit,
                "resets_at": reset.isoformat(),
            }
        },
    )


def reserve(user: Any, project: Project, images: int) -> datetime:
    """Hold ``images`` against the user's and the project's quotas; call inside the submit's transaction.

    Raises QuotaExceeded (nothing held) when either has no room. Returns the period the hold belongs to.
    """
    start, end = period_bounds()
    checks = [("user", user.pk, user_limits(user)), ("project", project.pk, project_limits(project))]
    limited = [(s, i, lim) for s, i, lim in checks if lim.images is not None or lim.gpu_seconds is not None]
    if not limited:
        return start
    rows = _rows([(s, i) for s, i, _ in limited], start, lock=True)
    for subject, subject_id, limit in limited:
        row = rows[(subject, subject_id)]
        if limit.images is not None and row.images_used + row.images_reserved + images > limit.images:
            raise _refusal(subject, "images", row.images_used + row.images_reserved, limit.images, end)
        if limit.gpu_seconds is not None and row.gpu_seconds_used >= limit.gpu_seconds:
            raise _refusal(subject, "gpu_seconds", row.gpu_seconds_used, limit.gpu_seconds, end)
    for subject, subject_id, _ in limited:
        QuotaUsage.objects.filter(pk=rows[(subject, subject_id)].pk).update(
            images_reserved=F("images_reserved") + images
        )
    return start


def settle(job: Any, images_made: int, gpu_seconds: float) -> None:
    """Turn a job's hold into use: call inside the transaction that ends the job.

    Usage is counted for user and project even when neither has a limit, so that a limit set later starts
    from the truth.
    """
    period_start = job.quota_period_start or period_bounds(job.created_at)[0]
    subjects = [("user", job.created_by_id), ("project", job.project_id)]
    rows = _rows(subjects, period_start, lock=True)
    for row in rows.values():
        held = min(row.images_reserved, job.reserved_images)
        QuotaUsage.objects.filter(pk=row.pk).update(
            images_reserved=F("images_reserved") - held,
            images_used=F("images_used") + images_made,
            gpu_seconds_used=F("gpu_seconds_used") + gpu_seconds,
        )


def summary(user: Any) -> dict[str, Any]:
    """``GET /api/v1/me/quota``: the user's own quota in the current period."""
    start, end = period_bounds()
    row = QuotaUsage.objects.filter(subject="user", subject_id=user.pk, period_start=start).first()
    limits = user_limits(user)
    return {
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
        "images": {"used": row.images_used + row.images_reserved if row else 0, "limit": limits.images},
        "gpu_seconds": {"used": round(row.gpu_seconds_used, 1) if row else 0, "limit": limits.gpu_seconds},
    }


def do_set_limits(
    actor: Any,
    scope: str,
    body: dict[str, Any],
    *,
    user: Any = None,
    project: Project | None = None,
    ip: str | None = None,
) -> QuotaLimit:
    """Set a quota (a site default, or one user's or project's override). Admins only; checked by callers."""
    wanted = validate(QuotaIn, body)  # the API's type, so the quota page and the API agree
    images, gpu_seconds = wanted.images, wanted.gpu_seconds
    with transaction.atomic():
        limit, _ = QuotaLimit.objects.select_for_update().get_or_create(
            scope=scope, user=user, project=project
        )
        before = {"images": limit.images, "gpu_seconds": limit.gpu_seconds}
        limit.images, limit.gpu_seconds = images, gpu_seconds
        limit.save()
        target = f"user:{user.get_username()}" if user else f"project:{project.slug}" if project else scope
        audit.record(
            actor,
            audit.QUOTA_CHANGE,
            target=target,
            project=project,
            ip=ip,
            details={"scope": scope, "from": before, "to": {"images": images, "gpu_seconds": gpu_seconds}},
        )
    return limit


def limits_to_dict(limit: QuotaLimit | Limits) -> dict[str, Any]:
    return {"images": limit.images, "gpu_seconds": limit.gpu_seconds}


def remaining_text(user: Any, project: Project) -> str:
    """One line for the generate page: what is left for this user in this project, this period."""
    start, end = period_bounds()
    rows = {
        (r.subject, r.subject_id): r
        for r in QuotaUsage.objects.filter(period_start=start).filter(
            models_q(subject="user", subject_id=user.pk) | models_q(subject="project", subject_id=project.pk)
        )
    }
    parts = []
    for subject, subject_id, limits, owner in (
        ("user", user.pk, user_limits(user), "You have"),
        ("project", project.pk, project_limits(project), "This project has"),
    ):
        row = rows.get((subject, subject_id))
        used_images = (row.images_used + row.images_reserved) if row else 0
        used_gpu = row.gpu_seconds_used if row else 0.0
        left = []
        if limits.images is not None:
            left.append(f"{max(0, limits.images - used_images)} of {limits.images} images")
        if limits.gpu_seconds is not None:
            left.append(f"{max(0.0, limits.gpu_seconds - used_gpu):.0f} of {limits.gpu_seconds} GPU-seconds")
        if left:
            parts.append(f"{owner} {' and '.join(left)} left")
    if not parts:
        return ""
    return "; ".join(parts) + f" until {end:%Y-%m-%d}."


def do_clear_limit(actor: Any, limit_id: int, *, ip: str | None = None) -> None:
    """Remove a user's or project's override, so the site default applies again."""
    with transaction.atomic():
        limit = (
            QuotaLimit.objects.select_for_update(of=("self",))
            .select_related("user", "project")
            .filter(pk=limit_id, scope__in=[QuotaScope.USER, QuotaScope.PROJECT])
            .first()
        )
        if limit is None:
            raise InvalidInput("No such override.")
        target = (
            f"user:{limit.user.get_username()}"
            if limit.user
            else f"project:{getattr(limit.project, 'slug', '')}"
        )
        audit.record(
            actor,
            audit.QUOTA_CHANGE,
            target=target,
            project=limit.project,
            ip=ip,
            details={"scope": limit.scope, "from": limits_to_dict(limit), "to": "site default"},
        )
        limit.delete()


def parse_limit_form(data: Any) -> dict[str, int | None]:
    """Form fields (blank = unlimited) to the API's body shape; bad numbers become field errors later."""
    body: dict[str, Any] = {}
    for name in ("images", "gpu_seconds"):
        raw = (data.get(name) or "").strip()
        body[name] = None if raw == "" else int(raw) if raw.isdigit() else raw
    return body
