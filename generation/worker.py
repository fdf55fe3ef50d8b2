"""What a worker does with one job: claim it, run the engine with live updates, store the result.

Runs only in Celery workers (``tasks.run_job``); it is the bridge between the job row and the engine.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from pydantic import ValidationError

from studio.errors import InvalidInput
from studio.logs import job_context

from . import realtime, regions, scheduling, services
from .engine import registry
from .engine.errors import GenerationError
from .fleet import reporter
from .models import JobStatus
from .schemas import JobParams

logger = logging.getLogger(__name__)

FAILED_ON_WORKER = (
    "Generation failed on the worker. An administrator can find the details in the worker's log under job "
    "{job}."
)


class JobMonitor:
    """The step callback's companion: it publishes previews and progress, beats, and watches for a cancel.

    The diffusion loop stores the latest step, queues messages for the publisher thread and reads the cancel
    flag from the cache; a thread writes the heartbeat and progress to the row every few seconds (what the
    sweeper watches) and also reads the row's cancel flag, in case the cache lost it.
    """

    def __init__(
        self, job_id: Any, attempt: int, total: int, image_size: int, live: Any | None = None
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.step, self.total = 0, total
        self.cancel = threading.Event()
        self.publisher = realtime.JobPublisher(job_id, image_size=image_size, live=live)
        self._stop = threading.Event()
        # The thread logs with the job's context (studio.logs), copied from the job's own.
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._watch,), name=f"monitor-{job_id}", daemon=True
        )
        self._thread.start()

    # StepHooks, called from the diffusion loop
    def on_step(self, step: int, total: int) -> None:
        self.step, self.total = step, total
        self.publisher.progress(step, total)

    def wants_preview(self, step: int, total: int) -> bool:
        return self.publisher.wants_preview()

    def on_preview(self, step: int, total: int, rgb: np.ndarray) -> None:
        self.publisher.preview(step, total, rgb)

    def should_cancel(self) -> bool:
        # One cache read per step keeps "cancel stops the job within one step" true even for fast steps.
        if not self.cancel.is_set() and services.cancel_requested_fast(self.job_id):
            self.cancel.set()
        return self.cancel.is_set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.publisher.close()
        # The live preview is the job's picture in the cache: it goes when the loop ends, whatever ends
        # the job (its row may even be gone, with its project).
        services.forget_live_preview(self.job_id)

    def _watch(self) -> None:
        interval = settings.STUDIO_JOB_HEARTBEAT_SECONDS
        try:
            while True:
                try:
                    if services.do_heartbeat(self.job_id, self.attempt, self.step, self.total):
                        self.cancel.set()
                except DatabaseError as exc:
                    # The database restarting: beat again on a fresh connection at the next interval.
                    logger.warning(
                        "Heartbeat of job %s not written (%s)", self.job_id, exc.__class__.__name__
                    )
                    connection.close()
                if self._stop.wait(interval):
                    return
        except Exception:
            logger.exception("Monitor for job %s stopped", self.job_id)
        finally:
            close_old_connections()


class StartImageMissing(Exception):
    """The job's start image or mask can no longer be read (deleted since the job was queued)."""


def load_start_images(project_id: Any, params: JobParams) -> tuple[Any, Any]:
    """The job's start image (RGB) and inpainting mask (greyscale, white = repaint) as PIL images, read from
    storage and decoded afresh: only ids and stored names come from the job's params, and the start image
    must still belong to the job's project."""
    from gallery.models import Asset
    from gallery.services import asset_storage, decode_image

    if params.init_asset is None:
        return None, None
    asset = Asset.objects.filter(project_id=project_id, pk=params.init_asset).first()
    if asset is None or not asset.file:
        raise StartImageMissing("The start image was deleted before the job ran.")
    unreadable = "The start image could not be read."
    limit = max(asset.width * asset.height, 1)
    try:
        with asset.file.open("rb") as f:
            data = f.read()
        image = decode_image(
            data, field="init_asset", formats=("PNG",), max_pixels=limit, not_readable=unreadable
        )
    except (OSError, InvalidInput) as exc:
        raise StartImageMissing(unreadable) from exc
    mask = None
    if params.mask:
        try:
            with asset_storage().open(params.mask, "rb") as f:
                data = f.read()
            mask = decode_image(
                data,
                field="mask",
                formats=("PNG",),
                max_pixels=limit,
                not_readable="The mask could not be read.",
            ).convert("L")
        except (OSError, InvalidInput) as exc:
            raise StartImageMissing("The job's mask could not be read.") from exc
    return image.convert("RGB"), mask


def _project_images(project_id: Any, image_ids: list[Any], field: str, noun: str) -> list[Any]:
    """Images of the job's project (RGB, in the order of ``image_ids``), read from storage and decoded
    afresh; each must still be an image of the project, else the job fails with a sentence about the
    ``noun`` ("reference image", "control image")."""
    from gallery.models import Asset
    from gallery.services import decode_image

    if not image_ids:
        return []
    assets = {str(a.pk): a for a in Asset.objects.filter(project_id=project_id, pk__in=set(image_ids))}
    unreadable = f"A {noun} could not be read."
    images = []
    for image_id in image_ids:
        asset = assets.get(str(image_id))
        if asset is None or not asset.file:
            raise StartImageMissing(f"A {noun} was deleted before the job ran.")
        try:
            with asset.file.open("rb") as f:
                data = f.read()
            image = decode_image(
                data,
                field=field,
                formats=("PNG",),
                max_pixels=max(asset.width * asset.height, 1),
                not_readable=unreadable,
            )
        except (OSError, InvalidInput) as exc:
            raise StartImageMissing(unreadable) from exc
        images.append(image.convert("RGB"))
    return images


def load_reference_images(project_id: Any, params: JobParams) -> tuple[Any, ...]:
    """The job's reference images, in order."""
    wanted = [reference.image for reference in params.references]
    return tuple(_project_images(project_id, wanted, "references", "reference image"))


def load_control_images(project_id: Any, params: JobParams) -> list[Any]:
    """The control images of the job's ControlNet units, in order."""
    wanted = [unit.image for unit in params.controlnets]
    return _project_images(project_id, wanted, "controlnets", "control image")


# How long a worker waits for the database to come back before it gives a job's start or end up (to the
# sweeper, which queues it again): a restart of PostgreSQL takes a few seconds.
DATABASE_PATIENCE = 60.0


def with_database(operation: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``operation``, retrying on a lost database connection with a growing pause. Safe for the job's
    writes because each is one conditional transaction: a retry after a commit whose answer was lost finds
    the job no longer in the state it expects and changes nothing."""
    deadline = time.monotonic() + DATABASE_PATIENCE
    pause = 0.25
    while True:
        try:
            return operation(*args, **kwargs)
        except DatabaseError as exc:
            if time.monotonic() + pause > deadline:
                raise
            logger.warning("Database unreachable (%s); retrying in %.2g s", exc.__class__.__name__, pause)
            connection.close()
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


@dataclass
class Member:
    """One job of a pipeline call: its row, its attempt, what the engine runs and its live companion."""

    job: Any
    attempt: int
    request: Any  # engine.runner.GenerationRequest
    monitor: JobMonitor | None = None
    outcome: str = ""


def execute_job(job_id: str, worker: str) -> str:
    """Run the job if it is queued, with the queued jobs that can share its pipeline call (cross-user
    batching, up to ``STUDIO_MAX_BATCH`` images). Returns what happened to the job started (for logs and
    tests)."""
    started = with_database(services.do_start_job, job_id, worker)
    if started is None:
        logger.info("Nothing queued beside job %s; nothing to do", job_id)
        return "skipped"
    job, attempt = started
    lead = _prepare(job, attempt, worker)
    if isinstance(lead, str):
        return lead
    members = gather(lead, worker)
    if len(members) > 1:
        logger.info(
            "Running %d jobs in one call: %s", len(members), ", ".join(str(m.job.id) for m in members)
        )
    fleet = reporter()
    fleet.running([m.job for m in members])
    try:
        _run(members, worker)
    finally:
        done = [m for m in members if m.outcome == JobStatus.SUCCEEDED]
        fleet.finished(len(done), sum(m.request.params.num_images for m in done))
    return lead.outcome


def gather(lead: Member, worker: str) -> list[Member]:
    """The lead job and the queued jobs that join its call. People pressing Generate at the same moment
    arrive some milliseconds apart: while compatible jobs keep arriving the call waits for them, until
    ``STUDIO_BATCH_WAIT_MS`` pass with none new (at most four times that in all), so that a burst shares one
    call instead of splitting into several. A job with no other submitted just before it starts at once."""
    members = [lead]
    room = batch_room(lead.request)
    if room <= 0:
        return members
    quiet = settings.STUDIO_BATCH_WAIT_MS / 1000
    started = last_joined = time.monotonic()
    while True:
        for job, attempt in with_database(services.do_claim_batch, lead.job, worker, room):
            last_joined = time.monotonic()
            member = _prepare(job, attempt, worker)
            if isinstance(member, Member):
                members.append(member)
                room -= member.request.params.num_images
        now = time.monotonic()
        if room <= 0 or now - last_joined >= quiet or now - started >= 4 * quiet:
            return members
        if len(members) == 1 and not scheduling.others_arrived(lead.job, 4 * quiet):
            return members  # nobody else is pressing Generate: a job alone never waits
        time.sleep(min(0.01, quiet - (now - last_joined)))


def batch_room(request: Any) -> int:
    """How many more images may join this request's pipeline call: ``STUDIO_MAX_BATCH`` and the device's
    memory both cap the call's images (reference images take memory of their own per image)."""
    from .engine.runner import batch_capacity

    params = request.params
    if settings.STUDIO_MAX_BATCH <= 1:
        return 0
    capacity = batch_capacity(request.model, params.width, params.height, len(params.controlnets))
    # Regional prompts widen each image's denoiser batch from 2 rows to 2 + one per region.
    capacity = max(1, capacity * 2 // (2 + len(params.regions)))
    cap = min(settings.STUDIO_MAX_BATCH, capacity)
    if params.references:
        from .engine.reference import BANK_SHARE

        cap = max(1, int(cap / (1 + BANK_SHARE * len(params.references))))
    return max(0, cap - params.num_images)


def _context(job: Any, worker: str) -> Any:
    return job_context(job_id=job.id, user=job.created_by.username, project=job.project.slug, worker=worker)


def _prepare(job: Any, attempt: int, worker: str) -> Member | str:
    """What the engine needs to run a started job, or the job failed with a sentence (its outcome)."""
    with _context(job, worker):
        logger.info("Job %s started (attempt %d)", job.id, attempt)
        try:
            params = JobParams.model_validate(job.params)
        except ValidationError:
            logger.exception("Job %s has parameters the worker cannot read", job.id)
            return _fail(job, attempt, "The job's parameters could not be read.")
        model = registry.get_model(job.model_id)
        if model is None:
            return _fail(job, attempt, f"The model {job.model_id!r} is not installed on this worker.")
        try:
            init_image, mask_image = load_start_images(job.project_id, params)
            region_masks = regions.load_masks(params)
            reference_images = load_reference_images(job.project_id, params)
            control_images = load_control_images(job.project_id, params)
        except (StartImageMissing, regions.RegionMaskMissing) as exc:
            return _fail(job, attempt, str(exc))
    from .engine.runner import GenerationRequest

    request = GenerationRequest(
        model,
        params,
        init_image=init_image,
        mask_image=mask_image,
        region_masks=region_masks,
        reference_images=reference_images,
        control_images=tuple(control_images),
    )
    return Member(job, attempt, request)


def _fail(job: Any, attempt: int, error: str, gpu_seconds: float = 0) -> str:
    services.do_finish_job(job.id, attempt, JobStatus.FAILED, error=error, gpu_seconds=gpu_seconds)
    logger.info("Job %s ended: %s", job.id, JobStatus.FAILED)
    return JobStatus.FAILED


class BatchMonitor(JobMonitor):
    """A job's monitor in a shared call: a cancel ends the job at once (its slice of the call goes on and is
    discarded), charged its share of the time so far."""

    def __init__(self, member: Member, live: realtime.LivePublisher) -> None:
        params = member.request.params
        size = max(params.width, params.height)
        super().__init__(member.job.id, member.attempt, params.planned_steps(), size, live=live)
        self.member = member

    def on_canceled(self, gpu_seconds: float) -> None:
        self.close()
        services.do_finish_job(self.job_id, self.attempt, JobStatus.CANCELED, gpu_seconds=gpu_seconds)
        self.member.outcome = JobStatus.CANCELED
        logger.info("Job %s ended: %s", self.job_id, JobStatus.CANCELED)


def _run(members: list[Member], worker: str) -> None:
    """Run the members' call and end every member's job exactly once."""
    live = realtime.LivePublisher()  # one thread sends every member's progress and previews
    try:
        _run_call(members, worker, live)
    finally:
        live.close()


def _run_call(members: list[Member], worker: str, live: realtime.LivePublisher) -> None:
    from .engine import runner

    for member in members:
        with _context(member.job, worker):  # (the monitor's thread logs with its job's context)
            member.monitor = BatchMonitor(member, live)
    monitors = [m.monitor for m in members]
    error: str | None = None
    try:
        if len(members) == 1:
            results = [runner.generate(members[0].request, monitors[0])]  # type: ignore[arg-type]
        else:
            results = runner.generate_batch([m.request for m in members], monitors)  # type: ignore[arg-type]
    except SoftTimeLimitExceeded:
        error = "The job ran past the time limit."
    except GenerationError as exc:
        if len(members) > 1 and str(exc) == runner.OUT_OF_MEMORY:
            logger.warning("A call of %d jobs ran out of memory; running them one at a time", len(members))
            _close_all(members)
            for member in members:
                if not member.outcome:
                    _run([member], worker)
            return
        logger.exception("Job(s) %s failed", ", ".join(str(m.job.id) for m in members))
        error = f"Generation failed: {exc}"
    except Exception:
        # Library and OS errors can name files and internals of the server: members get a sentence, the
        # log gets everything.
        logger.exception("Job(s) %s failed", ", ".join(str(m.job.id) for m in members))
        error = ""
    _close_all(members)  # flush every progress/preview message before the final one
    for index, member in enumerate(members):
        if member.outcome:
            continue  # canceled during the call: already ended
        with _context(member.job, worker):
            if error is not None:
                member.outcome = _fail(
                    member.job, member.attempt, error or FAILED_ON_WORKER.format(job=member.job.id)
                )
                continue
            member.outcome = _finish(member, results[index])
            logger.info("Job %s ended: %s", member.job.id, member.outcome)


def _close_all(members: list[Member]) -> None:
    for member in members:
        if member.monitor is not None and not member.outcome:
            member.monitor.close()


def _finish(member: Member, result: Any) -> str:
    job, attempt = member.job, member.attempt
    if result.canceled:
        services.do_finish_job(job.id, attempt, JobStatus.CANCELED, gpu_seconds=result.gpu_seconds)
        return JobStatus.CANCELED
    if with_database(
        services.do_complete_job,
        job,
        attempt,
        result.images,
        result.seeds,
        gpu_seconds=result.gpu_seconds,
        model_name=member.request.model.name,
        model_sha256=result.model_sha256,
        control_maps=result.control_maps,
    ):
        return JobStatus.SUCCEEDED
    # Canceled at the last moment, or handed to another worker while this one was presumed dead.
    job.refresh_from_db()
    if job.status == JobStatus.RUNNING and job.attempt == attempt and job.cancel_requested:
        services.do_finish_job(job.id, attempt, JobStatus.CANCELED, gpu_seconds=result.gpu_seconds)
        return JobStatus.CANCELED
    return "superseded"


def warm_up() -> None:
    """Import the engine and load the default model so the first job starts at once."""
    model = registry.default_model()
    if model is None:
        return
    try:
        from .engine.runner import cache

        cache().get(model)
    except Exception:
        logger.exception("Could not preload model %s; jobs will retry loading it", model.id)
