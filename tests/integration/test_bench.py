"""`make bench` keeps working: both halves run end to end at a tiny size and print every figure they promise.

The figures themselves are not judged here (timings belong to the benchmark, not to tests); a schema change
the gallery benchmark's seeding does not know about, or a broken start of the embedded studio, fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from urllib.parse import urlparse

import pytest

from tests.integration.stack import ROOT

pytestmark = pytest.mark.integration


def bench_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "DJANGO_"))}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def test_the_gallery_benchmark_seeds_measures_every_scenario_and_drops_its_database():
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        pytest.skip("the gallery benchmark runs on PostgreSQL")
    parsed = urlparse(url)
    bench_url = parsed._replace(path=parsed.path + "_bench").geturl()
    done = subprocess.run(
        [sys.executable, "bench/gallery_pages.py", "--assets", "500", "--requests", "3"],
        cwd=ROOT,
        env=bench_env(DATABASE_URL=bench_url),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "seeded 500 assets" in done.stdout
    rows = re.findall(r"^(first|deep) page.*?\s+3\s+[\d.]+\s+[\d.]+\s+[\d.]+$", done.stdout, re.M)
    assert len(rows) == 10, done.stdout

    import psycopg

    with psycopg.connect(parsed._replace(path="/postgres").geturl()) as conn:
        name = bench_url.rsplit("/", 1)[1]
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None


def test_the_job_benchmark_compares_the_studio_with_the_raw_pipeline(tmp_path):
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--runs", "1", "--steps", "2", "--model-dir", str(tmp_path)],
        cwd=ROOT,
        env=bench_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = (
        "raw diffusers call",
        "studio HTTP submit→succeeded",
        "ratio studio / raw",
        "AUTOMATIC1111 API txt2img",
        "ratio A1111 call / raw",
        "first preview",
    )
    for figure in figures:
        assert figure in done.stdout, done.stdout
    ratio = float(re.search(r"ratio studio / raw\s+([\d.]+)x", done.stdout).group(1))
    assert ratio > 0
    previews = re.search(r"previews received per job\s+median\s+([\d.]+)", done.stdout)
    assert previews and float(previews.group(1)) >= 1, done.stdout


def test_the_load_benchmark_runs_one_and_several_web_processes_and_prints_their_ratio():
    import shutil

    if shutil.which("wrk") is None and os.environ.get("CI") != "true":
        pytest.skip("wrk is not installed (apt-get install wrk)")
    done = subprocess.run(
        [sys.executable, "bench/web_load.py", "--duration", "2", "--viewers", "10", "--connections", "4"]
        + ["--assets", "50", "--jobs", "2", "--steps", "4", "--threads", "1", "--processes", "2"],
        cwd=ROOT,
        env=bench_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    runs = re.findall(
        r"^(\d+) daphne process\(es\):\s+([\d.]+) requests/s.*viewers with every event (\d+)/10$",
        done.stdout,
        re.M,
    )
    assert [r[0] for r in runs] == ["1", "2"], done.stdout
    assert all(float(rps) > 0 for _, rps, _ in runs)
    assert all(viewers == "10" for _, _, viewers in runs), done.stdout
    # Every page answered itself: none was a redirect to the sign-in page or an error.
    assert re.findall(r"non-2xx (\d+)", done.stdout) == ["0", "0"], done.stdout
    assert re.search(r"^ratio requests/s 2 processes / 1 process: [\d.]+x", done.stdout, re.M)


def test_the_fleet_benchmark_prints_the_batching_ratio_and_the_routing_loads():
    done = subprocess.run(
        [sys.executable, "bench/fleet.py", "--rounds", "1", "--steps", "2", "--alternations", "4"],
        cwd=ROOT,
        env=bench_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rates = re.findall(
        r"STUDIO_MAX_BATCH=(\d)\s+([\d.]+) images/s .*p50\s+(\d+) ms\s+p95\s+(\d+) ms", done.stdout
    )
    assert [r[0] for r in rates] == ["8", "1"], done.stdout
    assert all(float(r[1]) > 0 for r in rates)
    assert re.search(r"ratio batched / one at a time\s+[\d.]+x images/s", done.stdout), done.stdout
    loads = dict(re.findall(r"(with|without) routing\s+model loads\s+(\d+)", done.stdout))
    assert set(loads) == {"with", "without"}, done.stdout
