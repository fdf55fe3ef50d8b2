"""The real thing for integration and browser tests: daphne and a Celery worker as separate processes,
on PostgreSQL and Redis, sharing the test database and a temporary data dir with the test process."""

from __future__ import annotations

import http.cookiejar
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def services_missing() -> str | None:
    """Why integration tests cannot run here, or None."""
    db_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    if not db_url.startswith("postgres"):
        return "integration tests need DATABASE_URL pointing at PostgreSQL (make test sets it)"
    if not redis_url:
        return "integration tests need REDIS_URL (make test sets it)"
    db, redis = urlparse(db_url), urlparse(redis_url)
    if not _reachable(db.hostname or "127.0.0.1", db.port or 5432):
        return f"PostgreSQL is not reachable at {db.hostname}:{db.port or 5432}"
    if not _reachable(redis.hostname or "127.0.0.1", redis.port or 6379):
        return f"Redis is not reachable at {redis.hostname}:{redis.port or 6379}"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.05, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Stack:
    def __init__(self, database_name: str, data_dir: Path) -> None:
        from django.conf import settings

        db = settings.DATABASES["default"]
        self.database_url = (
            f"postgresql://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
            f"{database_name}"
        )
        self.data_dir = data_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.log_dir = data_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.worker: subprocess.Popen | None = None
        self.web: subprocess.Popen | None = None
        self.worker_count = 0
        self.extra_env: dict[str, str] = {}  # settings of this stack's own (single sign-on, MFA policy)

    def env(self) -> dict[str, str]:
        from django.conf import settings

        return dict(
            os.environ,
            STUDIO_ENV="test",
            DJANGO_SETTINGS_MODULE="studio.settings",
            DATABASE_URL=self.database_url,
            REDIS_URL=settings.REDIS_URL,
            STUDIO_DATA_DIR=str(settings.DATA_DIR),
            STUDIO_MODELS_DIR=str(settings.MODELS_DIR),
            STUDIO_MEDIA_DIR=str(settings.MEDIA_ROOT),
            STUDIO_GPU_QUEUE=settings.STUDIO_GPU_QUEUE,
            STUDIO_JOB_HEARTBEAT_SECONDS=str(settings.STUDIO_JOB_HEARTBEAT_SECONDS),
            STUDIO_JOB_STALE_SECONDS=str(settings.STUDIO_JOB_STALE_SECONDS),
            STUDIO_WORKER_BEAT_SECONDS=str(settings.STUDIO_WORKER_BEAT_SECONDS),
            STUDIO_PREVIEW_MIN_INTERVAL="0",
            STUDIO_DB_CONN_MAX_AGE="0",
            PYTHONUNBUFFERED="1",
            **self.extra_env,
        )

    def _spawn(self, name: str, argv: list[str], **extra_env: str) -> subprocess.Popen:
        log = (self.log_dir / f"{name}.log").open("ab")
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**self.env(), **extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def spawn_web(self, name: str, port: int, **extra_env: str) -> subprocess.Popen:
        """Another daphne on the same database, Redis and data dir, with settings of its own."""
        proc = self._spawn(
            name,
            [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "studio.asgi:application"],
            **extra_env,
        )
        wait_until(lambda: _reachable("127.0.0.1", port), 30, what=f"{name} to listen")
        return proc

    def start_worker(self, name: str = "itest") -> subprocess.Popen:
        from django.conf import settings

        self.worker_count += 1
        self.worker = self._spawn(
            f"worker{self.worker_count}",
            [
                str(BIN / "celery"),
                "-A",
                "studio",
                "worker",
                "-Q",
                f"{settings.STUDIO_GPU_QUEUE},maintenance",
                "-c",
                "1",
                "-n",
                f"{name}{self.worker_count}@%h",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ],
        )
        return self.worker

    def start_web(self) -> None:
        self.web = self._spawn(
            "daphne",
            [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port), "studio.asgi:application"],
        )
        wait_until(lambda: _reachable("127.0.0.1", self.port), 30, what="daphne to listen")

    def wait_worker_ready(self, timeout: float = 60) -> None:
        from studio.celery import app

        wait_until(lambda: app.control.ping(timeout=0.5), timeout, interval=0.2, what="a worker to answer")

    def kill_worker(self) -> None:
        """kill -9 the whole worker (parent and pool child), as a crash or an OOM kill would."""
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait()

    def stop(self) -> None:
        for proc in (self.web, self.worker):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in self.log_dir.glob("*.log")
        )

    # --- a small HTTP client --

    def api(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                kind = response.headers.get("Content-Type", "")
                return response.status, json.loads(raw) if "json" in kind else raw
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw


def chromium_path() -> str | None:
    return shutil.which("chromium") or (os.path.exists("/usr/bin/chromium") and "/usr/bin/chromium") or None


class _SecureOverHttp(http.cookiejar.DefaultCookiePolicy):
    def return_ok_secure(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return True


class Browser:
    """A person's browser, as far as the studio can tell: a session cookie and the CSRF token."""

    def __init__(self, base: str, *, behind_tls: bool = False) -> None:
        """``behind_tls``: production settings mark cookies Secure; a test speaking plain HTTP to them
        sends them back all the same, as the TLS proxy in front of the studio would."""
        self.base = base
        self.jar = http.cookiejar.CookieJar(_SecureOverHttp() if behind_tls else None)
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def csrf(self) -> str:
        return next(str(c.value) for c in self.jar if c.name == "csrftoken")

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None):
        headers = {"Referer": self.base + "/"}
        if method != "GET":
            headers["X-CSRFToken"] = self.csrf()
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type", "")

    def json(self, method: str, path: str, data=None):
        body = json.dumps(data).encode() if data is not None else None
        status, raw, _ = self.request(method, path, body, "application/json" if body else None)
        return status, json.loads(raw) if raw else None

    def upload(self, path: str, field: str, filename: str, data: bytes):
        boundary = uuid.uuid4().hex
        disposition = f"--{boundary}\r\nContent-Disposition: form-data; name="
        token = f'{disposition}"csrfmiddlewaretoken"\r\n\r\n{self.csrf()}\r\n'
        head = f'{disposition}"{field}"; filename="{filename}"\r\n'
        body = (
            (token + head + "Content-Type: image/png\r\n\r\n").encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return self.request("POST", path, body, f"multipart/form-data; boundary={boundary}")

    def sign_in(self, username: str, password: str) -> None:
        self.request("GET", "/accounts/login/")
        form = urllib.parse.urlencode(
            {"username": username, "password": password, "csrfmiddlewaretoken": self.csrf()}
        ).encode()
        status, page, _ = self.request("POST", "/accounts/login/", form, "application/x-www-form-urlencoded")
        assert status == 200 and b"Sign out" in page, page[:500]

    def finished_job(self, slug: str, body: dict) -> dict:
        status, job = self.json("POST", f"/api/v1/projects/{slug}/jobs", body)
        assert status == 201, job
        done = wait_until(
            lambda: (
                (j := self.json("GET", f"/api/v1/jobs/{job['id']}")[1])["status"]
                in {"succeeded", "failed", "canceled"}
                and j
            ),
            120,
            interval=0.3,
            what="the job to finish",
        )
        assert done["status"] == "succeeded", done
        return done
