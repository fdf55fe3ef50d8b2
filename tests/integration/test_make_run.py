"""`make run`'s launcher, as a new user meets it: one command starts everything on SQLite and a private
redis-server, prints how to sign in once, generates, stops cleanly on Ctrl-C, and keeps the data."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from tests.integration.stack import ROOT, Stack, free_port, wait_until

pytestmark = pytest.mark.integration


class Run:
    def __init__(self, data_dir: Path, port: int, **extra_env: str) -> None:
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("STUDIO_", "DATABASE_URL", "REDIS_URL", "DJANGO_"))
        }
        self.env.update(
            STUDIO_DATA_DIR=str(data_dir), STUDIO_MODELS_DIR=str(settings.MODELS_DIR), PYTHONUNBUFFERED="1"
        )
        self.env.update(extra_env)
        self.port = port
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "studio_run", "--port", str(port)],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.read_until("Studio is running")

    def read_until(self, marker: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if marker in line:
                return line
        raise AssertionError(f"no {marker!r} in output:\n{''.join(self.lines)[-3000:]}")

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        return self.proc.wait(60)


def listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def command_lines() -> list[tuple[int, str]]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            found.append(
                (int(cmdline.parent.name), cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            )
        except OSError:
            continue  # it ended while we looked
    return found


def processes_of(data_dir: Path) -> list[str]:
    """Command lines of live processes that name the run's data dir (the worker, its pool and beat)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        if cmdline.parent.name == str(os.getpid()):
            continue
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # it ended while we looked
        if str(data_dir) in text:
            found.append(text)
    return found


@pytest.fixture
def runs():
    """Every launcher a test starts is stopped, whatever the test's outcome."""
    started: list[Run] = []
    yield started
    for run in started:
        if run.proc.poll() is None:
            run.stop()


def test_make_run_serves_everything_and_ctrl_c_stops_it(tmp_path, runs):
    data_dir = tmp_path / "var"
    run = Run(data_dir, free_port())
    runs.append(run)
    output = "".join(run.lines)
    password = re.search(r"password: (\S+)", output)
    assert password, output
    assert "username: admin" in output

    client = Stack.__new__(Stack)
    client.base_url = f"http://127.0.0.1:{run.port}"
    assert client.api("GET", "/healthz", "")[0] == 200
    ready = wait_until(
        lambda: client.api("GET", "/readyz", "")[0] == 200,
        60,
        interval=0.5,
        what="the worker to answer /readyz",
    )
    assert ready
    redis_url = (data_dir / "run" / "redis.url").read_text()
    redis_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])

    token = run.manage("studio_token", "admin").strip()
    status, project = client.api("POST", "/api/v1/projects", token, {"name": "Launch"})
    assert status == 201
    status, job = client.api(
        "POST", f"/api/v1/projects/{project['slug']}/jobs", token, {"prompt": "a yellow star", "seed": 3}
    )
    assert status == 201, job
    done = wait_until(
        lambda: (
            client.api("GET", f"/api/v1/jobs/{job['id']}", token)[1]["status"] in {"succeeded", "failed"}
            and client.api("GET", f"/api/v1/jobs/{job['id']}", token)[1]
        ),
        90,
        interval=0.3,
        what="the job to finish",
    )
    assert done["status"] == "succeeded", done

    assert run.stop() == 0
    assert not listening(run.port) and not listening(redis_port), "Ctrl-C stops every process it started"

    again = Run(data_dir, free_port())
    runs.append(again)
    assert "password:" not in "".join(again.lines), "the admin is created once"
    client.base_url = f"http://127.0.0.1:{again.port}"
    status, jobs = client.api("GET", f"/api/v1/projects/{project['slug']}/jobs", token)
    assert status == 200 and [j["id"] for j in jobs["results"]] == [job["id"]], "the data is kept"
    assert again.stop() == 0


def test_nothing_outlives_a_killed_launcher(tmp_path, runs):
    run = Run(tmp_path / "var", free_port())
    runs.append(run)
    redis_url = (tmp_path / "var" / "run" / "redis.url").read_text()
    redis_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    # The worker, its pool process and its embedded beat are all up (they name the data dir).
    data_dir = tmp_path / "var"
    wait_until(lambda: len(processes_of(data_dir)) >= 3, 60, interval=0.2, what="the worker's processes")
    run.proc.kill()
    run.proc.wait()
    wait_until(
        lambda: not listening(run.port) and not listening(redis_port) and not processes_of(tmp_path / "var"),
        30,
        interval=0.2,
        what="daphne, redis, the worker, its pool and beat to stop after the launcher was killed",
    )


def test_the_admin_password_can_come_from_the_environment(tmp_path, runs):
    chosen = {"STUDIO_ADMIN_USERNAME": "boss", "STUDIO_ADMIN_PASSWORD": "a long chosen password"}
    run = Run(tmp_path / "var", free_port(), **chosen)
    runs.append(run)
    output = "".join(run.lines)
    assert "username: boss" in output
    assert "password: the one in STUDIO_ADMIN_PASSWORD" in output
    assert "a long chosen password" not in output


def test_a_killed_redis_is_restarted_and_the_queued_jobs_still_finish(tmp_path, runs):
    """kill -9 of the private Redis with ten jobs queued: the launcher starts it again (same port and
    password), the sweeper sends the lost messages again, and every job finishes; nothing else stops."""
    data_dir = tmp_path / "var"
    run = Run(data_dir, free_port(), STUDIO_SWEEP_SECONDS="1")
    runs.append(run)
    client = Stack.__new__(Stack)
    client.base_url = f"http://127.0.0.1:{run.port}"
    token = run.manage("studio_token", "admin").strip()
    slug = client.api("POST", "/api/v1/projects", token, {"name": "Faults"})[1]["slug"]
    ids = []
    for seed in range(10):
        status, job = client.api(
            "POST", f"/api/v1/projects/{slug}/jobs", token, {"prompt": "a red ring", "steps": 8, "seed": seed}
        )
        assert status == 201, job
        ids.append(job["id"])
    redis_port = (data_dir / "run" / "redis.url").read_text().rsplit(":", 1)[1].split("/")[0]
    # redis-server names itself after its address once it runs.
    [pid] = [
        pid for pid, cmdline in command_lines() if "redis-server" in cmdline and f":{redis_port}" in cmdline
    ]
    os.kill(pid, signal.SIGKILL)
    run.read_until("redis exited (-9); restarting it")
    run.read_until("redis restarted")

    def statuses() -> set[str]:
        return {client.api("GET", f"/api/v1/jobs/{i}", token)[1]["status"] for i in ids}

    assert wait_until(lambda: statuses() == {"succeeded"}, 120, interval=1, what="every job to succeed")
    assert run.proc.poll() is None, "the studio kept running"
    assert run.stop() == 0
