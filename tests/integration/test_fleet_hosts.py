"""The worker fleet across hosts: a web host and two worker hosts, each worker host a network namespace of
its own (``ip netns``) joined to the web host by a bridge and veth links, reaching the web host's PostgreSQL
and Redis over them. Each worker host has its own models dir holding different models.

* Jobs go to the worker holding their model, counted from the workers' model-load logs.
* The workers page and ``GET /api/v1/admin/workers`` list both hosts.
* Stopping a worker host (every process in its namespace killed) moves its job to the other host once that
  one can load the model: meanwhile the job waits and its page says why.
* Routing: jobs alternating between two models on two workers (each with room for one loaded model) cause
  at most two model loads; without routing, more.

Needs root (network namespaces); under CI it must run, elsewhere it skips without root.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.integration.own_services import OwnPostgres, OwnRedis, postgres_bin
from tests.integration.stack import BIN, ROOT, Browser, Stack, free_port, wait_until

pytestmark = pytest.mark.integration

QUEUE = "gpu-fleet"
BRIDGE = "br-studio"
WEB_HOST = "10.231.0.1"
NETWORK = f"{WEB_HOST}/24"
HOSTS = {"host-a": "10.231.0.11", "host-b": "10.231.0.12"}
OPS_PASSWORD = "a long operator password"
LOADING = "Loading model "  # the line a worker logs for each load from disk


def ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


def namespace(host: str) -> str:
    return f"studio-{host}"


def build_network() -> None:
    """The bridge on the web host, and a namespace per worker host with a veth link into the bridge."""
    tear_down_network()
    ip("link", "add", BRIDGE, "type", "bridge")
    ip("addr", "add", NETWORK, "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")
    for n, (host, address) in enumerate(HOSTS.items()):
        ns, veth = namespace(host), f"veth-studio{n}"
        ip("netns", "add", ns)
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("link", "set", veth, "master", BRIDGE, "up")
        ip("netns", "exec", ns, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
        ip("netns", "exec", ns, "ip", "link", "set", "eth0", "up")
        ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")


def tear_down_network() -> None:
    for n, host in enumerate(HOSTS):
        stop_host(host)
        ip("link", "del", f"veth-studio{n}", check=False)  # (both ends, even while the namespace lingers)
        ip("netns", "del", namespace(host), check=False)
    ip("link", "del", BRIDGE, check=False)


def stop_host(host: str) -> None:
    """Every process of the host killed at once, as a power cut would."""
    found = subprocess.run(["ip", "netns", "pids", namespace(host)], capture_output=True, text=True)
    for pid in found.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def weights_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*.safetensors"))


def model_copy(source: Path, target: Path, name: str) -> None:
    shutil.copytree(source, target)
    meta_file = target / "studio.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    meta_file.write_text(json.dumps({**meta, "name": name}))


class Fleet:
    def __init__(self, folder: Path, db: OwnPostgres, redis: OwnRedis, demo: Path) -> None:
        self.folder, self.db, self.redis = folder, db, redis
        self.logs = folder / "logs"
        self.logs.mkdir()
        self.procs: dict[str, subprocess.Popen] = {}
        self.models = {name: folder / f"models-{name}" for name in ("web", "host-a", "host-b", "both")}
        for folder_ in self.models.values():
            folder_.mkdir()
        for name in ("web", "both"):
            model_copy(demo, self.models[name] / "alpha", "Alpha")
            model_copy(demo, self.models[name] / "beta", "Beta")
        model_copy(demo, self.models["host-a"] / "alpha", "Alpha")
        model_copy(demo, self.models["host-b"] / "beta", "Beta")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "DJANGO_"))},
            "STUDIO_ENV": "production",
            "STUDIO_SECRET_KEY": "fleet-" + "k" * 50,
            "STUDIO_ALLOWED_HOSTS": "127.0.0.1",
            "STUDIO_SSL_REDIRECT": "false",
            "DATABASE_URL": db.url,
            "REDIS_URL": redis.url,
            "STUDIO_DATA_DIR": str(folder / "var"),
            "STUDIO_MEDIA_DIR": str(folder / "media"),
            "STUDIO_MODELS_DIR": str(self.models["web"]),
            "STUDIO_DEFAULT_MODEL": "alpha",
            "STUDIO_GPU_QUEUE": QUEUE,
            "STUDIO_JOB_HEARTBEAT_SECONDS": "0.5",
            "STUDIO_JOB_STALE_SECONDS": "3",
            "STUDIO_WORKER_BEAT_SECONDS": "0.5",
            "STUDIO_SWEEP_SECONDS": "1",
            "STUDIO_DB_CONN_MAX_AGE": "0",
            "STUDIO_ACCESS_LOG": "false",
            # Room for one model's weights (the pipeline cache is bounded by memory): each worker keeps one.
            "STUDIO_HOST_CACHE_BYTES": str(weights_bytes(demo) * 3 // 2),
            "OMP_NUM_THREADS": "1",
            "STUDIO_TORCH_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.port = free_port()
        self.client = Stack.__new__(Stack)
        self.client.base_url = f"http://127.0.0.1:{self.port}"

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def spawn(self, name: str, argv: list[str], **env: str) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self) -> None:
        self.manage("migrate", "--no-input", "-v", "0")
        subprocess.run(
            [sys.executable, "manage.py", "createsuperuser", "--no-input", "--username", "ops"]
            + ["--email", "ops@studio.test"],
            cwd=ROOT,
            env={**self.env, "DJANGO_SUPERUSER_PASSWORD": OPS_PASSWORD},
            check=True,
            capture_output=True,
        )
        self.token = self.manage("studio_token", "ops").strip()
        self.web("web", self.port)
        self.spawn(
            "maintenance",
            [str(BIN / "celery"), "-A", "studio", "worker", "-Q", "maintenance", "-c", "1", "-B"]
            + ["-s", str(self.folder / "beat-schedule"), "-n", "maintenance@web", "--loglevel", "INFO"],
        )
        wait_until(lambda: self.ready(self.port), 90, interval=0.5, what="the studio to be ready")
        project = self.client.api("POST", "/api/v1/projects", self.token, {"name": "Fleet"})[1]
        self.slug = project["slug"]

    def web(self, name: str, port: int, **env: str) -> None:
        self.spawn(
            name,
            [sys.executable, "manage.py", "studio_web", "--bind", "127.0.0.1", "--port", str(port)],
            **env,
        )

    def ready(self, port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def worker(self, name: str, host: str, models: str, default_model: str) -> None:
        """A GPU worker on ``host``: inside its namespace, reaching PostgreSQL and Redis over the link."""
        argv = ["ip", "netns", "exec", namespace(host), str(BIN / "celery"), "-A", "studio", "worker"]
        argv += ["-Q", QUEUE, "-c", "1", "-n", f"{name}@{host}", "--loglevel", "INFO"]
        argv += ["--without-gossip", "--without-mingle"]
        self.spawn(
            name,
            argv,
            DATABASE_URL=self.db.link_url,
            REDIS_URL=self.redis.link_url,
            STUDIO_MODELS_DIR=str(self.models[models]),
            STUDIO_DEFAULT_MODEL=default_model,
            STUDIO_WORKER_HOST=host,
        )

    def workers(self) -> dict[str, dict]:
        status, body = self.client.api("GET", "/api/v1/admin/workers", self.token)
        assert status == 200, body
        return {w["name"]: w for w in body["workers"]}

    def wait_workers(self, *names: str) -> None:
        wait_until(
            lambda: set(names) <= set(self.workers()) and all(self.workers()[n]["loaded"] for n in names),
            120,
            interval=0.5,
            what=f"workers {names} to report a loaded model",
        )

    def sql(self, query: str, *args) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.db.url) as conn:
            return conn.execute(query, args).fetchall()

    def submit(
        self, model: str, prompt: str, *, steps: int = 6, port: int | None = None, images: int = 1
    ) -> str:
        client = self.client
        if port is not None:
            client = Stack.__new__(Stack)
            client.base_url = f"http://127.0.0.1:{port}"
        status, job = client.api(
            "POST",
            f"/api/v1/projects/{self.slug}/jobs",
            self.token,
            {
                "prompt": prompt,
                "model": model,
                "steps": steps,
                "width": 64,
                "height": 64,
                "num_images": images,
            },
        )
        assert status == 201, job
        return job["id"]

    def wait_done(self, ids: list[str], timeout: float = 120) -> dict[str, tuple]:
        def done() -> bool:
            rows = self.sql(
                "SELECT count(*) FROM generation_job WHERE id::text = ANY(%s) AND status IN"
                " ('succeeded', 'failed', 'canceled')",
                ids,
            )
            return rows[0][0] == len(ids)

        wait_until(done, timeout, interval=0.2, what="the jobs to finish")
        return {
            row[0]: row[1:]
            for row in self.sql(
                "SELECT id::text, status, worker, attempt, notice FROM generation_job"
                " WHERE id::text = ANY(%s)",
                ids,
            )
        }

    def loads(self, name: str) -> list[str]:
        """The models the worker loaded from disk, in order, from its log."""
        text = (self.logs / f"{name}.log").read_text(errors="replace")
        return [line.split(LOADING, 1)[1].split()[0] for line in text.splitlines() if LOADING in line]

    def tail(self) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            parts.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
        return "\n".join(parts)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            proc.wait(10)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, demo_model_dir):
    if os.geteuid() != 0 or shutil.which("ip") is None or postgres_bin() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the multi-host test needs root, iproute2 and PostgreSQL's server programs")
        pytest.skip("needs root, iproute2 and PostgreSQL's server programs")
    build_network()
    folder = tmp_path_factory.mktemp("fleet")
    db = OwnPostgres(network=NETWORK)
    redis = OwnRedis(folder, address=WEB_HOST)
    db.start()
    redis.start()
    fleet = Fleet(folder, db, redis, Path(settings.MODELS_DIR) / settings.STUDIO_DEFAULT_MODEL)
    try:
        fleet.start()
        yield fleet
    except BaseException:
        print(fleet.tail())
        raise
    finally:
        fleet.stop()
        tear_down_network()
        redis.stop()
        db.stop()


def test_jobs_go_to_the_host_holding_their_model_and_move_when_a_host_stops(fleet):
    fleet.worker("wa", "host-a", "host-a", "alpha")
    fleet.worker("wb", "host-b", "host-b", "beta")
    fleet.wait_workers("wa@host-a", "wb@host-b")

    # The workers page and the API list both hosts, with what each holds.
    listed = fleet.workers()
    assert (listed["wa@host-a"]["host"], listed["wb@host-b"]["host"]) == ("host-a", "host-b")
    assert "alpha" in listed["wa@host-a"]["installed"]  # (beside the bundled demo model)
    assert "beta" not in listed["wa@host-a"]["installed"]
    assert listed["wb@host-b"]["loaded"] == ["beta"]
    operator = Browser(fleet.client.base_url, behind_tls=True)
    operator.sign_in("ops", OPS_PASSWORD)
    status, page, _ = operator.request("GET", "/manage/workers/")
    assert status == 200
    assert all(text in page.decode() for text in ("wa@host-a", "wb@host-b", "host-a", "host-b"))

    ids = [fleet.submit(model, f"a {model} {i}") for i in range(3) for model in ("alpha", "beta")]
    rows = fleet.wait_done(ids)
    for job_id, (status, worker, _attempt, _notice) in rows.items():
        model = fleet.sql("SELECT model_id FROM generation_job WHERE id::text = %s", job_id)[0][0]
        assert status == "succeeded"
        assert worker == {"alpha": "wa@host-a", "beta": "wb@host-b"}[model]
    assert fleet.loads("wa") == ["alpha"]  # its warm-up: each job found its model loaded
    assert fleet.loads("wb") == ["beta"]

    # Host A stops in the middle of a job: the job waits, saying why, until host B can run its model.
    long_job = fleet.submit("alpha", "a long alpha", steps=150, images=4)
    wait_until(
        lambda: (
            fleet.sql("SELECT progress_step FROM generation_job WHERE id::text = %s", long_job)[0][0] >= 3
        ),
        60,
        interval=0.1,
        what="the long job to be running on host A",
    )
    stop_host("host-a")
    waiting = "No running worker has the model alpha installed"
    wait_until(
        lambda: waiting in fleet.sql("SELECT notice FROM generation_job WHERE id::text = %s", long_job)[0][0],
        60,
        interval=0.2,
        what="the job to wait for a worker with its model",
    )
    status, page, _ = operator.request("GET", f"/jobs/{long_job}/")
    assert waiting in page.decode()
    assert fleet.sql("SELECT status FROM generation_job WHERE id::text = %s", long_job)[0][0] == "queued"
    model_copy(
        fleet.models["web"] / "alpha", fleet.models["host-b"] / "alpha", "Alpha"
    )  # an admin installs it
    status, worker, attempt, notice = fleet.wait_done([long_job], timeout=180)[long_job]
    assert (status, worker, attempt) == ("succeeded", "wb@host-b", 2)
    assert waiting not in notice
    assert fleet.loads("wb").count("alpha") == 1
    stop_host("host-b")


def test_routing_keeps_alternating_models_to_two_loads(fleet):
    """Two workers that each keep one model loaded, both with both models installed; the jobs alternate in
    pairs between the models, each submitted when the last is done."""
    fleet.worker("wc", "host-a", "both", "alpha")
    fleet.worker("wd", "host-b", "both", "beta")
    fleet.wait_workers("wc@host-a", "wd@host-b")
    pattern = ["alpha", "beta", "beta", "alpha", "alpha", "beta", "beta", "alpha"]

    def alternate(port: int | None) -> int:
        before = len(fleet.loads("wc")) + len(fleet.loads("wd"))
        for i, model in enumerate(pattern):
            job_id = fleet.submit(model, f"{model} {i}", port=port)
            assert fleet.wait_done([job_id])[job_id][0] == "succeeded"
        return len(fleet.loads("wc")) + len(fleet.loads("wd")) - before

    warm_ups = len(fleet.loads("wc")) + len(fleet.loads("wd"))
    assert warm_ups == 2
    routed = alternate(None)
    assert warm_ups + routed <= 2  # each model stays where it is loaded

    unrouted_port = free_port()
    fleet.web("web-unrouted", unrouted_port, STUDIO_ROUTING="false")
    wait_until(lambda: fleet.ready(unrouted_port), 60, interval=0.5, what="the unrouted web to be ready")
    unrouted = alternate(unrouted_port)
    print(f"model loads for {len(pattern)} alternating jobs: routed {routed}, unrouted {unrouted}")
    assert unrouted > 2
