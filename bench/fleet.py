"""`make bench`: the worker fleet. Cross-user batching and model-aware routing, each against its baseline in
the same run.

Batching. Two embedded studios (`manage.py studio_run`: daphne, a worker, a private Redis) on the bundled
demo model, one with ``STUDIO_MAX_BATCH=8`` and one with ``STUDIO_MAX_BATCH=1``, both with the same torch
threads (``--torch-threads``, default every core), measured in alternating rounds. In each round 8 people
submit one compatible job each at the same moment (different prompts and seeds) through HTTP, each
following their job on a websocket until its final image. It prints images per second with batching over
images per second without, and the p50 and p95 of each person's submit → final image.

Routing. An embedded studio with a second worker beside its own, both with two models installed (copies of
the demo model, "alpha" and "beta") and room for one loaded model each (``STUDIO_HOST_CACHE_BYTES``):
jobs alternating between the models in pairs, each submitted when the last has finished, once with routing
and once without (``STUDIO_ROUTING=false``). It prints the model loads from disk (counted from the workers'
logs) and the total time of each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import api, free_port, studio_job  # noqa: E402 - after the path

PEOPLE = 8
PROMPTS = [
    "a red circle in the centre on a blue background",
    "a blue square on a yellow background",
    "a green triangle on a white background",
    "a yellow star on a black background",
    "a purple circle on a green background",
    "an orange square on a blue background",
    "a white triangle on a red background",
    "a black star on a yellow background",
]
LOADING = "Loading model "


class Studio:
    """An embedded studio on a data dir of its own, with its log in a file."""

    def __init__(self, label: str, models_dir: Path | None = None, **settings: str) -> None:
        self.label = label
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"studio-bench-{label}-"))
        self.log = self.data_dir / "studio.log"
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "DJANGO_"))
        }
        self.env.update(
            STUDIO_ENV="embedded",
            STUDIO_DATA_DIR=str(self.data_dir),
            STUDIO_MODELS_DIR=str(models_dir or self.data_dir / "models"),
            STUDIO_ACCESS_LOG="false",
            PYTHONUNBUFFERED="1",
            **settings,
        )
        self.port = free_port()
        self.base, self.ws_base = f"http://127.0.0.1:{self.port}", f"ws://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        self.procs.append(
            self._spawn([sys.executable, "manage.py", "studio_run", "--port", str(self.port)], self.log)
        )
        deadline = time.monotonic() + 180
        while "Studio is running" not in self.log.read_text(errors="replace"):
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                raise SystemExit(f"the {self.label} studio did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        self.admin_token = self.manage("studio_token", "admin").strip()
        self.slug = api(self.base, "POST", "/api/v1/projects", self.admin_token, {"name": "Bench"})["slug"]

    def _spawn(self, argv: list[str], log: Path) -> subprocess.Popen:
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def people(self, count: int) -> list[str]:
        """Tokens of ``count`` artists of the project, each a person of their own."""
        code = f"""
from django.contrib.auth import get_user_model
from studio.models import Membership, Project
from studio.services import do_create_token
project = Project.objects.get(slug={self.slug!r})
for n in range({count}):
    user = get_user_model().objects.create_user(f"artist{{n}}", f"artist{{n}}@bench.test", None)
    Membership.objects.create(project=project, user=user, role="artist")
    print(do_create_token(user, "bench")[1])
"""
        return [word for word in self.manage("shell", "-c", code).split() if word.startswith("stu_")]

    def second_worker(self) -> Path:
        """Another GPU worker beside the embedded one, on the same data dir and private Redis."""
        log = self.data_dir / "second-worker.log"
        queue = self.env.get("STUDIO_GPU_QUEUE", "gpu")
        argv = [str(Path(sys.executable).parent / "celery"), "-A", "studio", "worker", "-Q", queue, "-c", "1"]
        self.procs.append(self._spawn([*argv, "-n", "second@%h", "--loglevel", "INFO"], log))
        return log

    def workers(self) -> list[dict]:
        return api(self.base, "GET", "/api/v1/admin/workers", self.admin_token)["workers"]

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def burst(studio: Studio, tokens: list[str], params: dict) -> tuple[float, list[float]]:
    """Every person submits one job at the same moment; the round's wall time and each person's latency."""
    gate = threading.Barrier(len(tokens) + 1)
    latencies: list[float] = [0.0] * len(tokens)
    errors: list[BaseException] = []

    def person(index: int) -> None:
        body = {**params, "prompt": PROMPTS[index % len(PROMPTS)], "seed": 1000 + index}
        gate.wait()
        try:
            latencies[index] = studio_job(studio.base, studio.ws_base, studio.slug, tokens[index], body)[
                "total"
            ]
        except BaseException as exc:  # (SystemExit from a failed job included)
            errors.append(exc)

    threads = [threading.Thread(target=person, args=(i,)) for i in range(len(tokens))]
    for thread in threads:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"a job of the {studio.label} round failed: {errors[0]}")
    return time.perf_counter() - started, latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def batching(args: argparse.Namespace) -> None:
    threads = str(args.torch_threads)
    batched = Studio("batch8", STUDIO_MAX_BATCH=str(PEOPLE), STUDIO_TORCH_THREADS=threads)
    alone = Studio("batch1", STUDIO_MAX_BATCH="1", STUDIO_TORCH_THREADS=threads)
    try:
        for studio in (batched, alone):
            studio.start()
        tokens = {studio.label: studio.people(PEOPLE) for studio in (batched, alone)}
        model = next(
            m for m in api(batched.base, "GET", "/api/v1/models", batched.admin_token) if m["id"] == "demo"
        )
        params = {
            "steps": args.steps,
            "width": model["default_width"],
            "height": model["default_height"],
            "scheduler": model["default_scheduler"],
            "guidance_scale": model["default_guidance"],
        }
        for studio in (batched, alone):  # warm every path
            burst(studio, tokens[studio.label], params)
        walls: dict[str, list[float]] = {"batch8": [], "batch1": []}
        latencies: dict[str, list[float]] = {"batch8": [], "batch1": []}
        for _ in range(args.rounds):
            for studio in (batched, alone):
                wall, each = burst(studio, tokens[studio.label], params)
                walls[studio.label].append(wall)
                latencies[studio.label].extend(each)
        rate = {label: PEOPLE / statistics.median(values) for label, values in walls.items()}
        print(
            f"batching: {PEOPLE} people, one job each at once, demo {params['width']}x{params['height']}, "
            f"{params['steps']} steps, {args.rounds} rounds each (alternating), {threads} torch threads"
        )
        for label, name in (("batch8", "STUDIO_MAX_BATCH=8"), ("batch1", "STUDIO_MAX_BATCH=1")):
            values = latencies[label]
            print(
                f"  {name:20} {rate[label]:6.2f} images/s   submit→final image p50 "
                f"{percentile(values, 0.5) * 1000:7.0f} ms  p95 {percentile(values, 0.95) * 1000:7.0f} ms"
            )
        print(f"  ratio batched / one at a time {rate['batch8'] / rate['batch1']:6.2f}x images/s")
    finally:
        batched.stop()
        alone.stop()


def alternating(studio: Studio, pattern: list[str], steps: int) -> tuple[int, float]:
    """The studio and a second worker run ``pattern``'s jobs one after another: loads from disk, seconds."""
    second = studio.second_worker()
    wait_for(lambda: len(studio.workers()) == 2, 120, "the second worker")

    def loads() -> int:
        return sum(log.read_text(errors="replace").count(LOADING) for log in (studio.log, second))

    before = loads()
    started = time.perf_counter()
    for i, model in enumerate(pattern):
        body = {"prompt": PROMPTS[i % len(PROMPTS)], "model": model, "steps": steps, "seed": i}
        studio_job(studio.base, studio.ws_base, studio.slug, studio.admin_token, body)
    return loads() - before, time.perf_counter() - started


def routing(args: argparse.Namespace) -> None:
    models = Path(tempfile.mkdtemp(prefix="studio-bench-models-"))
    for name in ("alpha", "beta"):
        shutil.copytree(ROOT / "generation" / "demo_model", models / name)
    weights = sum(f.stat().st_size for f in (models / "alpha").rglob("*.safetensors"))
    pattern = ["alpha", "beta", "beta", "alpha"] * (args.alternations // 4)
    print(
        f"routing: {len(pattern)} jobs alternating in pairs between two models; two workers, one model each"
    )
    try:
        for routed in (True, False):
            studio = Studio(
                "routed" if routed else "unrouted",
                models,
                STUDIO_DEFAULT_MODEL="alpha",
                STUDIO_HOST_CACHE_BYTES=str(weights * 3 // 2),  # room for one model's weights
                STUDIO_ROUTING="true" if routed else "false",
            )
            try:
                studio.start()
                loads, total = alternating(studio, pattern, args.steps)
                label = "with routing   " if routed else "without routing"
                print(f"  {label} model loads {loads:3d}   total {total:6.2f} s")
            finally:
                studio.stop()
    finally:
        shutil.rmtree(models, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="the workers' torch threads (the embedded studio's own default leaves the web a core)",
    )
    parser.add_argument("--alternations", type=int, default=8, help="jobs of the routing workload")
    parser.add_argument("--only", choices=("batching", "routing"))
    args = parser.parse_args()
    if args.only != "routing":
        batching(args)
    if args.only != "batching":
        routing(args)


if __name__ == "__main__":
    main()
