"""`make bench`: the studio's end-to-end job time against the raw diffusers call, in the same run.

It starts the embedded studio (`manage.py studio_run`: daphne, a Celery worker, a private Redis) on a
temporary data dir with the default model, and alternates two measurements on the same model, size, steps,
scheduler and guidance:

* raw: ``StableDiffusionPipeline.__call__`` in this process;
* studio: HTTP POST of the job → the ``succeeded`` message on a websocket that listened all along
  (previews on);
* AUTOMATIC1111 API: one blocking ``POST /sdapi/v1/txt2img`` of the same job, answered with the image in
  base64 (as the tools that speak it wait for it).

It prints medians, the ratio studio/raw, the time from the job starting to the first preview reaching the
client, and previews received per job.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def api(base: str, method: str, path: str, token: str, body: object = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback only
        return json.loads(response.read())


def a1111_call(base: str, slug: str, token: str, params: dict) -> float:
    """One ``POST /sdapi/v1/txt2img`` of the job, as an AUTOMATIC1111 client makes it; its wall time."""
    body = {
        "prompt": params["prompt"],
        "steps": params["steps"],
        "width": params["width"],
        "height": params["height"],
        "sampler_name": params["scheduler"],
        "cfg_scale": params["guidance_scale"],
        "seed": params["seed"],
    }
    request = urllib.request.Request(
        base + "/sdapi/v1/txt2img",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "X-Studio-Project": slug,
        },
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - loopback only
        images = json.loads(response.read())["images"]
    if len(images) != 1:
        raise SystemExit(f"the AUTOMATIC1111 call made {len(images)} images")
    return time.perf_counter() - started


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def studio_job(base: str, ws_base: str, slug: str, token: str, params: dict) -> dict:
    """Submit and follow one job; return its timings as the client saw them."""
    from websockets.sync.client import connect

    started = time.perf_counter()
    job = api(base, "POST", f"/api/v1/projects/{slug}/jobs", token, params)
    running_at = first_preview_at = None
    previews = 0
    with connect(
        f"{ws_base}/ws/jobs/{job['id']}/", additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        while True:
            message = json.loads(ws.recv(timeout=120))
            now = time.perf_counter()
            if message["type"] == "status" and message["status"] == "running" and running_at is None:
                running_at = now
            elif message["type"] == "progress" and running_at is None:
                running_at = now
            elif message["type"] == "preview":
                previews += 1
                if first_preview_at is None:
                    first_preview_at = now
                    running_at = running_at or now
            elif message["type"] in ("succeeded", "failed", "canceled"):
                if message["type"] != "succeeded":
                    raise SystemExit(f"job {job['id']} {message['type']}: {message}")
                done = now
                break
    return {
        "total": done - started,
        "first_preview": (first_preview_at - running_at) if first_preview_at and running_at else float("nan"),
        "previews": previews,
    }


def worker_side(database: Path, runs: int) -> dict[str, float]:
    """What the worker recorded for the measured jobs: pipeline time and queue pickup latency."""
    import sqlite3
    from datetime import datetime

    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT created_at, started_at, gpu_seconds FROM generation_job ORDER BY created_at DESC LIMIT ?",
            (runs,),
        ).fetchall()
    pickups = [
        (datetime.fromisoformat(started) - datetime.fromisoformat(created)).total_seconds()
        for created, started, _ in rows
    ]
    return {"pipeline": statistics.median(r[2] for r in rows), "pickup": statistics.median(pickups)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--model-dir", default=os.environ.get("STUDIO_MODELS_DIR", str(ROOT / "var" / "models"))
    )
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "DJANGO_"))}
    env.update(
        STUDIO_ENV="embedded",
        STUDIO_DATA_DIR=str(data_dir),
        STUDIO_MODELS_DIR=args.model_dir,
        PYTHONUNBUFFERED="1",
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "studio_run", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Studio is running" in line:
                break
        else:
            raise SystemExit("the studio did not start")
        token = subprocess.run(
            [sys.executable, "manage.py", "studio_token", "admin"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        base, ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
        slug = api(base, "POST", "/api/v1/projects", token, {"name": "Bench"})["slug"]
        model = next(m for m in api(base, "GET", "/api/v1/models", token) if m["id"] == "demo")
        params = {
            "prompt": "a red circle in the centre on a blue background",
            "steps": args.steps,
            "width": model["default_width"],
            "height": model["default_height"],
            "scheduler": model["default_scheduler"],
            "guidance_scale": model["default_guidance"],
            "seed": 1,
        }

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from diffusers import StableDiffusionPipeline

        from generation.engine.pipelines import SCHEDULER_CLASSES

        # The studio serves "demo" from the models dir when one is there, else the bundled model.
        installed = Path(args.model_dir) / "demo"
        bundled = ROOT / "generation" / "demo_model"
        folder = installed if (installed / "model_index.json").exists() else bundled
        pipe = StableDiffusionPipeline.from_pretrained(
            str(folder),
            local_files_only=True,
            use_safetensors=True,
            safety_checker=None,
            requires_safety_checker=False,
        )
        cls, kwargs = SCHEDULER_CLASSES[str(params["scheduler"])]
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **kwargs)
        pipe.set_progress_bar_config(disable=True)

        def raw() -> float:
            started = time.perf_counter()
            with torch.inference_mode():
                pipe(
                    prompt=params["prompt"],
                    width=params["width"],
                    height=params["height"],
                    num_inference_steps=params["steps"],
                    guidance_scale=params["guidance_scale"],
                    generator=[torch.Generator("cpu").manual_seed(1)],
                )
            return time.perf_counter() - started

        raw()
        studio_job(base, ws_base, slug, token, params)  # warm every path
        a1111_call(base, slug, token, params)
        raws, runs, a1111 = [], [], []
        for _ in range(args.runs):
            raws.append(raw())
            runs.append(studio_job(base, ws_base, slug, token, params))
            a1111.append(a1111_call(base, slug, token, params))
        raw_median = statistics.median(raws)
        studio_median = statistics.median(r["total"] for r in runs)
        a1111_median = statistics.median(a1111)
        print(
            f"model demo {params['width']}x{params['height']}, {params['steps']} steps, "
            f"{params['scheduler']}, {args.runs} runs each, torch threads {torch.get_num_threads()}"
        )
        print(f"raw diffusers call           median {raw_median * 1000:8.1f} ms")
        print(f"studio HTTP submit→succeeded median {studio_median * 1000:8.1f} ms")
        print(f"ratio studio / raw           {studio_median / raw_median:8.3f}x")
        print(f"AUTOMATIC1111 API txt2img    median {a1111_median * 1000:8.1f} ms")
        print(f"ratio A1111 call / raw       {a1111_median / raw_median:8.3f}x")
        print(
            f"job start → first preview    median "
            f"{statistics.median(r['first_preview'] for r in runs) * 1000:8.1f} ms"
        )
        print(
            f"previews received per job    median {statistics.median(r['previews'] for r in runs):8.1f}"
            f" (min {min(r['previews'] for r in runs)})"
        )
        worker = worker_side(data_dir / "studio.sqlite3", 2 * args.runs)
        print(
            f"worker: pipeline call        median {worker['pipeline'] * 1000:8.1f} ms "
            f"({worker['pipeline'] / raw_median:.3f}x raw; live updates share the CPU)"
        )
        print(f"worker: queued → running     median {worker['pickup'] * 1000:8.1f} ms")
        print(
            f"studio outside the pipeline  median {(studio_median - worker['pipeline']) * 1000:8.1f} ms "
            "(HTTP, broker, database, PNG, websocket)"
        )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


if __name__ == "__main__":
    main()
