"""A PostgreSQL server and a redis-server of the test's own, on free ports in a temporary folder, so that a
test may kill and restart them without touching the services anyone else is using."""

from __future__ import annotations

import glob
import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.integration.stack import _reachable, free_port, wait_until


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as the system's postgres user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


class OwnPostgres:
    """A private PostgreSQL on 127.0.0.1 and, with ``network`` (an address on a link and its prefix length,
    ``10.231.0.1/24``), on that address too, trusting the link's hosts as it trusts loopback."""

    def __init__(self, network: str | None = None) -> None:
        self.network = network
        bindir = postgres_bin()
        assert bindir, "PostgreSQL's server programs are not installed"
        self.bin = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="studio-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
        )
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/studio"
        if network:
            address, prefix = network.split("/")
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {ipaddress.ip_network(network, strict=False)} trust\n")
            self.link_url = f"postgresql://postgres@{address}:{self.port}/studio"

    def pg_ctl(self, *args: str) -> None:
        listen = "127.0.0.1" + (f",{self.network.split('/')[0]}" if self.network else "")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses={listen} -c fsync=off"
        subprocess.run(
            _as_postgres(
                [
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.folder / "log"),
                    "-o",
                    options,
                ]
                + ["-w", "-t", "60", *args]
            ),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        self.pg_ctl("start")
        subprocess.run(
            _as_postgres([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "studio"]),
            check=True,
            capture_output=True,
        )

    def restart(self) -> None:
        self.pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        try:
            self.pg_ctl("stop", "-m", "immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


class OwnRedis:
    """A private Redis with a password on 127.0.0.1 and, with ``address``, on that address too."""

    def __init__(self, folder: Path, address: str | None = None) -> None:
        self.port = free_port()
        self.password = "redis-" + os.urandom(8).hex()
        self.url = f"redis://:{self.password}@127.0.0.1:{self.port}/0"
        self.address = address
        self.link_url = f"redis://:{self.password}@{address}:{self.port}/0" if address else self.url
        self.folder = folder
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        # No persistence, on purpose: a restart then loses every queued message, the worst case.
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                *([self.address] if self.address else []),
                "--requirepass",
                self.password,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(lambda: _reachable("127.0.0.1", self.port), 10, what="redis-server to listen")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
