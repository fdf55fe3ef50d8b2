"""The proof that nothing leaves: ``make run`` with every process watched — the launcher, daphne, the Celery
worker with its pool and its beat, and (through strace) redis-server and any native code — while a person
signs in, generates, inpaints, approves, exports and verifies. Every connection and name lookup must stay on
this machine. A second run adds one outbound call to one process and shows that the watch catches it."""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from PIL import Image

from tests.integration.stack import ROOT, Browser, free_port, wait_until

pytestmark = pytest.mark.integration

WATCH = Path(__file__).parent / "network_watch"
PASSWORD = "a long offline password"
STRACE_CONNECT = re.compile(r"^(\d+)\s+connect\(\d+, \{sa_family=(AF_\w+)(.*?)\}, \d+\)")
LOCAL_FAMILIES = {"AF_UNIX", "AF_LOCAL", "AF_UNSPEC", "AF_NETLINK"}


class Watched:
    """``make run`` under the network watch (and strace -f, when it is installed)."""

    def __init__(self, tmp_path: Path, **extra_env: str) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.data_dir = tmp_path / "var"
        self.port = free_port()
        self.log = tmp_path / "network.jsonl"
        self.trace = tmp_path / "connect.strace"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("STUDIO_", "DATABASE_URL", "REDIS_URL", "DJANGO_"))
        }
        env.update(
            STUDIO_DATA_DIR=str(self.data_dir),
            STUDIO_MODELS_DIR=str(settings.MODELS_DIR),
            STUDIO_ADMIN_PASSWORD=PASSWORD,
            STUDIO_ENCRYPT_AT_REST="true",
            STUDIO_NETWORK_WATCH_LOG=str(self.log),
            PYTHONPATH=os.pathsep.join(p for p in (str(WATCH), env.get("PYTHONPATH", "")) if p),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra_env)
        command = ["make", "--no-print-directory", "run", f"PORT={self.port}"]
        self.strace = shutil.which("strace")
        if os.environ.get("CI") == "true":
            assert self.strace, "CI installs strace for this test (.ci/run)"
        if self.strace:
            command = [self.strace, "-f", "-qq", "--seccomp-bpf", "-e", "trace=connect", "-e", "signal=none",
                       "-o", str(self.trace), *command]  # fmt: skip
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"
        self.read_until("Studio is running")

    def read_until(self, marker: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if marker in line:
                return
        raise AssertionError(f"no {marker!r} in output:\n{''.join(self.lines)[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def native_connects(self) -> list[tuple[str, str, str]]:
        """(pid, family, address) of every connect(2) strace saw, in any process."""
        if not self.strace or not self.trace.exists():
            return []
        found = []
        for line in self.trace.read_text().splitlines():
            match = STRACE_CONNECT.match(line)
            if match:
                found.append((match.group(1), match.group(2), match.group(3)))
        return found


def outbound(run: Watched) -> list[str]:
    """Every connection or lookup that went (or tried to go) anywhere but this machine."""
    leaks = [f"{e['event']} {e['target']} from [{e['argv']}]" for e in run.events() if not e["allowed"]]
    for pid, family, rest in run.native_connects():
        if family in LOCAL_FAMILIES:
            continue
        address = re.search(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"', rest)
        host = (address.group(1) or address.group(2)) if address else ""
        try:
            ip = ipaddress.ip_address(host)
            mapped = getattr(ip, "ipv4_mapped", None)
            if ip.is_loopback or (mapped and mapped.is_loopback):
                continue
        except ValueError:
            pass
        leaks.append(f"connect(2) {family} {rest.strip(', ')} in process {pid}")
    return leaks


def mask_for(width: int, height: int) -> str:
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (width // 4, height // 4, width * 3 // 4, height * 3 // 4))
    out = io.BytesIO()
    mask.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


@pytest.fixture
def watched(tmp_path, demo_model_dir):
    runs: list[Watched] = []

    def start(**env: str) -> Watched:
        run = Watched(tmp_path / f"run{len(runs)}", **env)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop()


def test_the_whole_flow_makes_no_outbound_connection(watched):
    run = watched()
    person = Browser(run.base)
    person.sign_in("admin", PASSWORD)
    status, project = person.json("POST", "/api/v1/projects", {"name": "Offline"})
    assert status == 201, project
    slug = project["slug"]

    made = person.finished_job(slug, {"prompt": "a red circle on a blue background", "seed": 5, "steps": 4})
    [image] = made["assets"]
    inpainted = person.finished_job(
        slug,
        {
            "prompt": "a yellow star",
            "mode": "inpaint",
            "init_asset": image["id"],
            "mask": mask_for(image["width"], image["height"]),
            "steps": 4,
        },
    )
    [child] = inpainted["assets"]
    assert child["parent"] == image["id"]
    assert person.json("POST", f"/api/v1/assets/{child['id']}/submit")[0] == 200
    status, approved = person.json("POST", f"/api/v1/assets/{child['id']}/review", {"decision": "approve"})
    assert status == 200 and approved["status"] == "approved"

    status, archive, kind = person.request("GET", f"/api/v1/projects/{slug}/export?status=approved")
    assert status == 200 and kind == "application/zip"
    exported = zipfile.ZipFile(io.BytesIO(archive))
    png = exported.read(next(n for n in exported.namelist() if n.endswith(".png")))

    status, raw, _ = person.upload("/api/v1/verify", "image", "exported.png", png)
    answer = json.loads(raw)
    assert status == 200 and answer["trusted"], answer
    assert [step["actions"][-1] for step in answer["chain"]] == [
        "c2pa.published",
        "c2pa.edited",
        "c2pa.created",
    ]
    assert answer["chain"][0]["review"]["approved_by"] == "admin"
    assert [step["asset"] and step["asset"]["id"] for step in answer["chain"][1:]] == [
        child["id"],
        image["id"],
    ]
    status, page, _ = person.upload("/verify/", "image", "exported.png", png)
    assert status == 200 and b"Valid and trusted" in page

    # Stored encrypted (the data dir's own key, made on this first run), served in the clear.
    stored = [p for p in (run.data_dir / "media").rglob("*") if p.is_file()]
    assert len(stored) >= 5 and not any(p.read_bytes().startswith((b"\x89PNG", b"\xff\xd8")) for p in stored)
    assert person.request("GET", f"/api/v1/assets/{child['id']}/image")[1].startswith(b"\x89PNG")
    run.stop()

    events = run.events()
    started = [e["argv"] for e in events if e["event"] == "process.start"]
    assert any("studio_run" in a for a in started), started  # the launcher
    assert any("daphne" in a for a in started), started
    worker = [
        e
        for e in events
        if e["event"] == "process.start" and "celery" in e["argv"] and " worker" in e["argv"]
    ]
    assert worker, started
    forks = [e for e in events if e["event"] == "process.fork" and e["ppid"] == worker[0]["pid"]]
    assert len(forks) >= 2, events  # its pool process and the embedded beat
    assert any(e["event"] == "socket.connect" and e["allowed"] for e in events)  # the watch saw traffic
    if run.strace:
        assert run.native_connects(), "strace saw the processes connect to Redis"
    assert outbound(run) == []


def test_the_watch_catches_a_single_outbound_call(watched):
    run = watched(STUDIO_NETWORK_WATCH_CALL_OUT="daphne", STUDIO_WEB_PROCESSES="1")  # one daphne, one call
    wait_until(lambda: outbound(run), 30, interval=0.2, what="the watch to see daphne's outbound call")
    run.stop()
    [leak] = outbound(run)
    assert "192.0.2.1" in leak and "daphne" in leak
