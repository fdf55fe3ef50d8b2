"""schemathesis, an outside fuzzer, against a live studio (daphne, a worker, PostgreSQL, Redis).

It reads ``/api/v1/openapi.json`` and ``/sdapi/v1/openapi.json`` as any client would and runs every check it
has (server errors, status codes and bodies the schema does not list, valid data refused, invalid data
accepted, auth ignored, ...) through its coverage, fuzzing and stateful phases. A new operation is fuzzed
without anyone listing it here. The run must end with no failure and no schema error.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from PIL import Image

from gallery.models import Board
from gallery.services import do_upload_image
from generation import fleet
from generation.models import Job, JobStatus
from generation.schemas import StyleIn
from generation.styles import do_create_style
from studio import quotas
from studio.models import QuotaScope
from tests import factories
from tests.integration.stack import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HERE = Path(__file__).parent / "fuzz"
BIN = Path(sys.executable).parent


def _png() -> ContentFile:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buffer, format="PNG")
    return ContentFile(buffer.getvalue(), name="start.png")


@pytest.fixture
def fuzz_world(stack):
    """A site admin with a token (so the admin API is fuzzed too), the project they lead with an image, a
    job and a board, and a member for the member operations."""
    admin = factories.user("fuzz-admin", admin=True)
    member = factories.user("fuzz-artist")
    project = factories.project(admin, "Fuzz")
    factories.member(project, member, "artist")
    asset = factories.asset(project, admin)  # a made image (with a prompt, for variations and upscales)
    job = Job.objects.create(
        project=project,
        created_by=admin,
        model_id="demo",
        queue="fuzz",
        params=factories.job_params(),
        status=JobStatus.SUCCEEDED,
    )
    board = Board.objects.create(project=project, name="Picks", created_by=admin)
    to_delete = do_upload_image(admin, project, _png())
    board_to_delete = Board.objects.create(project=project, name="Old", created_by=admin)
    project_to_delete = factories.project(admin, "Old project")
    style = do_create_style(admin, project, StyleIn(name="House"))
    style_to_delete = do_create_style(admin, project, StyleIn(name="Old style"))
    return {
        "FUZZ_STYLE": str(style.id),
        "FUZZ_STYLE_TO_DELETE": str(style_to_delete.id),
        "FUZZ_PROJECT_TO_DELETE": project_to_delete.slug,
        "FUZZ_ASSET_TO_DELETE": str(to_delete.id),
        "FUZZ_BOARD_TO_DELETE": str(board_to_delete.id),
        "FUZZ_ADMIN": admin.username,
        "FUZZ_PROJECT": project.slug,
        "FUZZ_ASSET": str(asset.id),
        "FUZZ_JOB": str(job.id),
        "FUZZ_BOARD": str(board.id),
        "FUZZ_MEMBER": member.username,
        "token": factories.token(admin),
        "admin": admin,
        "project": project,
    }


def fuzz(stack, world, schema: str, *, max_time: int) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        **{k: v for k, v in world.items() if k.startswith("FUZZ_")},
        "SCHEMATHESIS_HOOKS": "tests.integration.fuzz.hooks",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    command = [
        str(BIN / "schemathesis"),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{stack.base_url}{schema}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--header",
        f"Authorization: Bearer {world['token']}",
        "--header",
        f"X-Studio-Project: {world['FUZZ_PROJECT']}",
        "--max-time",
        str(max_time),
        "--request-timeout",
        "30",
        "--workers",
        "1",
        "--seed",
        "1",
        "--no-color",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=max_time + 300)
    report = Path(os.environ.get("STUDIO_DATA_DIR", "/tmp")) / f"schemathesis{schema.replace('/', '-')}.txt"
    report.write_text(result.stdout + result.stderr)
    return result


def _stop_jobs(project) -> None:
    """What the fuzzer queued must not keep the shared worker busy for the tests after this one."""
    from generation import services

    for job in Job.objects.filter(project=project).exclude(status__in=["succeeded", "failed", "canceled"]):
        try:
            services.do_cancel_job(job.created_by, job)
        except Exception:  # noqa: S112 - finished meanwhile
            continue
    # A canceled job's call may still be writing on the worker; the database is emptied after this test, and
    # emptying it under the worker's writes can deadlock.
    wait_until(
        lambda: not any(state.get("current") for state in fleet.live_workers().values()),
        timeout=120,
        what="the worker to finish its current call",
    )


def test_the_studio_api_passes_every_schemathesis_check(stack, fuzz_world):
    # Room for a few real jobs; the rest of the valid ones are refused for the quota (429), so the worker is
    # not kept busy for long.
    quotas.do_set_limits(
        fuzz_world["admin"],
        QuotaScope.PROJECT,
        {"images": 24, "gpu_seconds": None},
        project=fuzz_world["project"],
    )
    try:
        result = fuzz(stack, fuzz_world, "/api/v1/openapi.json", max_time=150)
    finally:
        _stop_jobs(fuzz_world["project"])
    print(result.stdout[-6000:])
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]
    assert "No issues found" in result.stdout or " 0 failures" in result.stdout or "passed" in result.stdout


def test_the_automatic1111_api_passes_every_schemathesis_check(stack, fuzz_world):
    # No room for images: valid generation requests are answered 429 at once, after all of their
    # validation, so the fuzzer tests the boundary without waiting on images (the webuiapi tests make them).
    quotas.do_set_limits(
        fuzz_world["admin"],
        QuotaScope.PROJECT,
        {"images": 0, "gpu_seconds": None},
        project=fuzz_world["project"],
    )
    result = fuzz(stack, fuzz_world, "/sdapi/v1/openapi.json", max_time=60)
    print(result.stdout[-6000:])
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]
