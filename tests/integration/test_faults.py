"""Faults on the production layout: PostgreSQL, an external Redis, the web tier (`manage.py studio_web`),
two GPU workers and a maintenance worker with beat, all separate processes. The PostgreSQL and Redis are
this test's own, so killing and restarting them touches nobody else's.

Under a burst of jobs: kill -9 Redis and start it again (it keeps nothing, so every queued message is
lost); restart PostgreSQL; kill -9 a worker in the middle of a job. After each, every job finishes exactly
once (no job lost, no duplicate image, no double quota charge), and the job's page says what happened."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.integration.own_services import OwnPostgres, OwnRedis, postgres_bin
from tests.integration.stack import BIN, ROOT, Browser, Stack, free_port, wait_until

OPS_PASSWORD = "a long operator password"

pytestmark = pytest.mark.integration

QUEUE = "gpu-faults"
BURST = 6


class Layout:
    """The studio's processes on the test's own PostgreSQL and Redis."""

    def __init__(self, folder: Path, db: OwnPostgres, redis: OwnRedis) -> None:
        self.folder, self.db, self.redis = folder, db, redis
        self.port = free_port()
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "DJANGO_"))},
            "STUDIO_ENV": "production",
            "STUDIO_SECRET_KEY": "faults-" + "k" * 50,
            "STUDIO_ALLOWED_HOSTS": "127.0.0.1",
            "STUDIO_SSL_REDIRECT": "false",
            "DATABASE_URL": db.url,
            "REDIS_URL": redis.url,
            "STUDIO_DATA_DIR": str(folder / "var"),
            "STUDIO_MEDIA_DIR": str(folder / "media"),
            "STUDIO_MODELS_DIR": str(settings.MODELS_DIR),
            "STUDIO_GPU_QUEUE": QUEUE,
            "STUDIO_JOB_HEARTBEAT_SECONDS": "0.5",
            "STUDIO_JOB_STALE_SECONDS": "5",
            "STUDIO_WORKER_BEAT_SECONDS": "0.5",
            "STUDIO_SWEEP_SECONDS": "1",
            "STUDIO_DB_CONN_MAX_AGE": "0",
            "STUDIO_ACCESS_LOG": "false",
            "OMP_NUM_THREADS": "1",
            "STUDIO_TORCH_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.client = Stack.__new__(Stack)
        self.client.base_url = f"http://127.0.0.1:{self.port}"

    def manage(self, *args: str, **env: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**self.env, **env},
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def spawn(self, name: str, argv: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def gpu_worker(self, name: str) -> None:
        self.spawn(
            name,
            [str(BIN / "celery"), "-A", "studio", "worker", "-Q", QUEUE, "-c", "1", "-n", f"{name}@%h"]
            + ["--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        )

    def start(self) -> None:
        self.manage("migrate", "--no-input", "-v", "0")
        self.manage(
            "createsuperuser", "--no-input", "--username", "ops", "--email", "ops@studio.test",
            DJANGO_SUPERUSER_PASSWORD=OPS_PASSWORD,
        )  # fmt: skip
        self.token = self.manage("studio_token", "ops").strip()
        self.spawn(
            "web",
            [sys.executable, "manage.py", "studio_web", "--bind", "127.0.0.1", "--port", str(self.port)],
        )
        self.gpu_worker("gpu1")
        self.gpu_worker("gpu2")
        self.spawn(
            "maintenance",
            [str(BIN / "celery"), "-A", "studio", "worker", "-Q", "maintenance", "-c", "1", "-B"]
            + ["-s", str(self.folder / "beat-schedule"), "-n", "maintenance@%h", "--loglevel", "INFO"],
        )
        wait_until(lambda: self.ready(), 90, interval=0.5, what="the studio to be ready")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.client.base_url + "/readyz", timeout=3) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def kill(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.logs.glob("*.log")
        )

    # --- reading the truth, straight from the database (retrying through its restart)
    def sql(self, query: str, *params: object) -> list[tuple]:
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(self.db.url, connect_timeout=3) as conn:
                    return conn.execute(query, params).fetchall()
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)


@pytest.fixture(scope="module")
def layout(tmp_path_factory, demo_model_dir):
    if postgres_bin() is None and os.environ.get("CI") != "true":
        pytest.skip("PostgreSQL's server programs are not installed")
    folder = tmp_path_factory.mktemp("faults")
    db = OwnPostgres()
    redis = OwnRedis(folder)
    db.start()
    redis.start()
    layout = Layout(folder, db, redis)
    try:
        layout.start()
        project = layout.client.api("POST", "/api/v1/projects", layout.token, {"name": "Faults"})[1]
        layout.slug = project["slug"]
        yield layout
    except BaseException:
        print(layout.tail())
        raise
    finally:
        layout.stop()
        redis.stop()
        db.stop()


def burst(layout: Layout, prompt: str, *, batchable: bool = False) -> list[str]:
    """Jobs submitted at once. Unless ``batchable``, each asks for its own step count, so that no two share a
    pipeline call and some wait in the queue while others run."""
    ids = []
    for i in range(BURST):
        steps = 40 if batchable else 40 + i
        status, job = layout.client.api(
            "POST",
            f"/api/v1/projects/{layout.slug}/jobs",
            layout.token,
            {
                "prompt": f"{prompt} {i}",
                "steps": steps,
                "width": 64,
                "height": 64,
                "num_images": 2,
                "seed": i,
            },
        )
        assert status == 201, job
        ids.append(job["id"])
    return ids


def wait_running(layout: Layout, ids: list[str], step: int = 3) -> tuple[str, str]:
    """A job of the burst that is well into its steps: (its id, its worker)."""
    return wait_until(
        lambda: next(
            iter(
                layout.sql(
                    "SELECT id::text, worker FROM generation_job WHERE id::text = ANY(%s)"
                    " AND status = 'running' AND progress_step >= %s",
                    ids,
                    step,
                )
            ),
            None,
        ),
        60,
        interval=0.1,
        what="a job of the burst to be running",
    )


def assert_each_finished_exactly_once(layout: Layout, ids: list[str]) -> dict[str, tuple]:
    try:
        wait_until(
            lambda: (
                layout.sql(
                    "SELECT count(*) FROM generation_job WHERE id::text = ANY(%s) AND status IN"
                    " ('succeeded', 'failed', 'canceled')",
                    ids,
                )[0][0]
                == len(ids)
            ),
            180,
            interval=0.5,
            what="every job of the burst to finish",
        )
    except AssertionError as exc:
        jobs = layout.sql(
            "SELECT id::text, status, attempt, worker, enqueued_at, started_at, notice FROM generation_job"
            " WHERE id::text = ANY(%s)",
            ids,
        )
        import redis

        broker = redis.Redis.from_url(layout.redis.url)
        held = f"broker: {QUEUE} holds {broker.llen(QUEUE)}, unacked {broker.hlen('unacked')}"
        raise AssertionError("\n".join([str(exc), *map(repr, jobs), held, layout.tail()])) from None
    rows = {
        row[0]: row[1:]
        for row in layout.sql(
            "SELECT id::text, status, error, attempt, notice FROM generation_job WHERE id::text = ANY(%s)",
            ids,
        )
    }
    assert {r[0] for r in rows.values()} == {"succeeded"}, rows
    images = dict(
        layout.sql(
            "SELECT job_id::text, count(*) FROM gallery_asset WHERE job_id::text = ANY(%s) GROUP BY job_id",
            ids,
        )
    )
    assert images == dict.fromkeys(ids, 2), "two images per job: none lost, none made twice"
    assert (
        layout.sql("SELECT count(*) FROM (SELECT DISTINCT job_id, index FROM gallery_asset) d")[0][0]
        == (layout.sql("SELECT count(*) FROM gallery_asset")[0][0])
    )
    # Quotas: every image charged once, nothing left held.
    charged = layout.sql(
        "SELECT coalesce(sum(images_used), 0), coalesce(sum(images_reserved), 0) FROM studio_quotausage"
        " WHERE subject = 'project'"
    )[0]
    assert charged == (layout.sql("SELECT count(*) FROM gallery_asset")[0][0], 0)
    return rows


def page_of(layout: Layout, job_id: str) -> str:
    """The job's page, as the operator's browser shows it (pages take a session, never a token)."""
    person = Browser(layout.client.base_url, behind_tls=True)
    person.sign_in("ops", OPS_PASSWORD)
    status, body, _ = person.request("GET", f"/jobs/{job_id}/")
    assert status == 200
    return body.decode()


def test_kill_9_of_redis_loses_no_job(layout):
    ids = burst(layout, "a red circle")
    wait_running(layout, ids)
    waiting = [
        r[0]
        for r in layout.sql(
            "SELECT id::text FROM generation_job WHERE id::text = ANY(%s) AND status = 'queued'", ids
        )
    ]
    layout.redis.kill()
    time.sleep(1.5)
    layout.redis.start()  # empty: every message that waited in it is gone
    rows = assert_each_finished_exactly_once(layout, ids)
    resent = [job for job in waiting if rows[job][3]]
    assert resent, "the jobs whose messages were lost were sent again"
    notice = rows[resent[0]][3]
    assert "lost its list" in notice
    assert notice in page_of(layout, resent[0])


def test_a_postgresql_restart_loses_no_job(layout):
    ids = burst(layout, "a blue square")
    wait_running(layout, ids)
    layout.db.restart()
    assert_each_finished_exactly_once(layout, ids)
    wait_until(layout.ready, 30, interval=0.5, what="the studio to be ready again")


def test_kill_9_of_a_worker_mid_job_loses_no_job(layout):
    ids = burst(layout, "a green star")
    job_id, worker = wait_running(layout, ids, step=5)
    name = worker.split("@")[0]
    layout.kill(name)
    rows = assert_each_finished_exactly_once(layout, ids)
    assert rows[job_id][2] == 2, "the killed worker's job ran again, once"
    assert rows[job_id][3].startswith("Its worker stopped at step ")
    assert "the job was queued again (attempt 2 of 3)" in page_of(layout, job_id)


def test_kill_9_of_a_worker_mid_batch_loses_none_of_the_batch(layout):
    """Jobs of several people sharing one pipeline call: the worker dies mid-call, and each of them finishes
    exactly once, on a worker that is still alive."""
    layout.gpu_worker("gpu4")  # beside the survivor of the test before
    ids = burst(layout, "a purple moon", batchable=True)

    def a_batch_mid_call() -> tuple[str, list[str]] | None:
        rows = layout.sql(
            "SELECT worker, array_agg(id::text) FROM generation_job WHERE id::text = ANY(%s)"
            " AND status = 'running' AND progress_step >= 5 GROUP BY worker HAVING count(*) >= 2",
            ids,
        )
        return (rows[0][0], rows[0][1]) if rows else None

    worker, batch = wait_until(a_batch_mid_call, 60, interval=0.05, what="a batch to be mid-call")
    layout.kill(worker.split("@")[0])
    rows = assert_each_finished_exactly_once(layout, ids)
    for job_id in batch:
        assert rows[job_id][2] == 2, "each job of the killed call ran again, once"
        assert rows[job_id][3].startswith("Its worker stopped at step ")
    finished_by = {
        row[0]
        for row in layout.sql("SELECT DISTINCT worker FROM generation_job WHERE id::text = ANY(%s)", batch)
    }
    assert worker not in finished_by


def test_a_worker_stopped_for_an_upgrade_finishes_its_job_before_it_exits(layout):
    """SIGTERM (what systemd, compose and Kubernetes send) is Celery's warm shutdown: the job in hand
    finishes on that worker, and the worker then exits cleanly."""
    layout.gpu_worker("gpu3")  # a fresh worker beside the survivor, as a rolling upgrade starts one
    ids = burst(layout, "a white cross")
    job_id, worker = wait_running(layout, ids, step=3)
    stopping = layout.procs[worker.split("@")[0]]
    stopping.send_signal(signal.SIGTERM)
    rows = assert_each_finished_exactly_once(layout, ids)
    assert rows[job_id][2] == 1, "finished by the worker that was stopping, not queued again"
    assert not rows[job_id][3]
    assert stopping.wait(60) == 0
