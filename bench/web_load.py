"""`make bench` (third part): the web tier under a busy morning's load, one daphne against several.

It starts the embedded studio (`manage.py studio_run`: SQLite, a private Redis, a worker) twice on the same
data dir, first with one daphne process (``STUDIO_WEB_PROCESSES=1``), then with one per core (the
default), and runs the same load on each:

* wrk (Debian's package) with ``--connections`` connections for ``--duration`` seconds on the gallery
  API page (``GET /api/v1/projects/{slug}/assets``), the gallery page and a job page, in turn;
* meanwhile ``--viewers`` websocket viewers watch ``--jobs`` jobs (spread evenly over them), connected
  before the load starts, while the jobs run one after another (a viewer that joins a running job gets
  its state, then every event after).

The worker generates on the same cores, at the embedded studio's lower CPU priority (``STUDIO_WORKER_NICE``):
while wrk keeps the web processes busy, its jobs step more slowly, and the viewers must still hear every step.

It prints, per run, requests/s, latency percentiles and the longest request, errors (non-2xx, socket
errors, requests past wrk's 2 s timeout) and whether every viewer got every event after it joined; then
the ratio of the two runs' requests/s and the targets (0 errors, none over 2 s, every event, ≥ 1.5×).
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import api, free_port  # noqa: E402 - after the path

WRK_SCRIPT = """
local paths = {%(paths)s}
local i = 0
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.headers["Cookie"] = "sessionid=%(session)s"
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
"""


ADMIN_PASSWORD = secrets.token_urlsafe(18)  # this run's, for the embedded admin the launcher makes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def signed_in_session(base: str, username: str, password: str) -> str:
    """A browser session's id, signed in through the sign-in page (pages take a session, never a token)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(base + "/accounts/login/", timeout=30)
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    form = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": csrf})
    login = urllib.request.Request(base + "/accounts/login/", data=form.encode(), headers={"Referer": base})
    opener.open(login, timeout=30)
    session = next((c.value for c in jar if c.name == "sessionid"), None)
    if not session:
        raise SystemExit("could not sign in to the studio")
    return str(session)


def seed_assets(env: dict[str, str], slug: str, count: int) -> None:
    """Asset rows (metadata only: the pages measured render no image bytes) in the running studio's
    SQLite database, written beside it as any management command would."""
    code = f"""
import uuid
from gallery.models import Asset
from studio.models import Project
project = Project.objects.get(slug={slug!r})
author = project.created_by
rows = [
    Asset(project=project, width=512, height=512, seed=i, prompt=f"a red circle on a blue background {{i}}",
          params={{"prompt": "a red circle", "seed": i, "steps": 20, "width": 512, "height": 512}},
          model_id="demo", model_name="Demo", model_sha256="0" * 64, created_by=author,
          file=f"assets/{{project.id}}/bench/{{uuid.uuid4()}}.png")
    for i in range({count})
]
Asset.objects.bulk_create(rows, batch_size=500)
"""
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True)


@dataclass
class Viewers:
    """Websocket clients, each on one job's stream, recording what they receive."""

    ws_base: str
    token: str
    received: dict[int, list[dict]] = field(default_factory=dict)
    connected: int = 0
    failed: list[str] = field(default_factory=list)

    async def _view(self, index: int, job_id: str, ready: asyncio.Event) -> None:
        from websockets.asyncio.client import connect

        messages: list[dict] = []
        self.received[index] = messages
        try:
            async with connect(
                f"{self.ws_base}/ws/jobs/{job_id}/",
                additional_headers={"Authorization": f"Bearer {self.token}"},
                open_timeout=30,
                max_size=2**22,
            ) as ws:
                self.connected += 1
                ready.set()
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=300))
                    messages.append(message)
                    if message["type"] in ("succeeded", "failed", "canceled"):
                        return
        except Exception as exc:  # recorded, judged below
            self.failed.append(f"viewer {index}: {exc.__class__.__name__}: {exc}")
        finally:
            ready.set()

    def run(self, job_ids: list[str], count: int, connected: threading.Event) -> threading.Thread:
        async def main() -> None:
            readies, tasks = [], []
            for i in range(count):
                ready = asyncio.Event()
                readies.append(ready)
                tasks.append(asyncio.create_task(self._view(i, job_ids[i % len(job_ids)], ready)))
                if i % 50 == 49:
                    await asyncio.sleep(0.05)  # a page opening at a time, not a flood of handshakes
            for ready in readies:
                await ready.wait()
            connected.set()
            await asyncio.gather(*tasks)

        thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
        thread.start()
        return thread

    def complete(self) -> tuple[int, list[str]]:
        """Viewers that got every event after they joined: from the first step they heard, every step to
        the last without a gap, then the outcome. (The state a viewer gets on joining may be a moment
        older than the live events: the gap between the two is not a missed event.)"""
        good, problems = 0, list(self.failed)
        for index, messages in sorted(self.received.items()):
            kinds = [m["type"] for m in messages]
            if not messages or kinds[-1] != "succeeded":
                problems.append(f"viewer {index}: ended with {kinds[-1:] or 'nothing'}")
                continue
            steps = [m["step"] for m in messages if m["type"] == "progress"]
            total = next((m["total"] for m in messages if m["type"] == "progress"), None)
            missing = sorted(set(range(steps[0], total + 1)) - set(steps)) if steps and total else []
            if missing:
                problems.append(f"viewer {index}: missed steps {missing[:5]} of {total}")
                continue
            good += 1
        return good, problems


@dataclass
class Result:
    processes: int
    rps: float
    p50: str
    p99: str
    longest: str
    longest_s: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    viewers_ok: int
    viewers: int
    problems: list[str]

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


def seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise SystemExit(f"could not read wrk's time {text!r}")
    return float(match.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[match.group(2)]


def parse_wrk(output: str) -> dict:
    latency = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", output, re.M)
    percentiles = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.M))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    done = re.search(r"^\s+(\d+) requests in", output, re.M)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if not (latency and rps and done):
        raise SystemExit(f"could not read wrk's output:\n{output}")
    return {
        "rps": float(rps.group(1)),
        "requests": int(done.group(1)),
        "longest": latency.group(3),
        "p50": percentiles.get("50", "?"),
        "p99": percentiles.get("99", "?"),
        "socket_errors": dict(
            zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True)
        )
        if errors
        else {"connect": 0, "read": 0, "write": 0, "timeout": 0},
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
    }


def measure(args: argparse.Namespace, data_dir: Path, processes: int, first: bool) -> Result:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "DJANGO_"))}
    env.update(
        STUDIO_ENV="embedded",
        STUDIO_DATA_DIR=str(data_dir),
        STUDIO_WEB_PROCESSES=str(processes),
        STUDIO_ADMIN_PASSWORD=ADMIN_PASSWORD,
        STUDIO_ACCESS_LOG="false",
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
    log = data_dir / f"studio-{processes}.log"
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Studio is running" in line:
                break
        else:
            raise SystemExit("the studio did not start")
        threading.Thread(target=lambda: log.write_text("".join(proc.stdout or [])), daemon=True).start()
        base, ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
        token = subprocess.run(
            [sys.executable, "manage.py", "studio_token", "admin"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if first:
            api(base, "POST", "/api/v1/projects", token, {"name": "Morning"})
            seed_assets(env, "morning", args.assets)
        old_job = api(base, "GET", "/api/v1/projects/morning/jobs", token)["results"]
        job_page = f"/jobs/{old_job[0]['id']}/" if old_job else "/p/morning/"
        paths = ["/api/v1/projects/morning/assets", "/p/morning/gallery/", job_page]
        script = data_dir / "wrk.lua"
        session = signed_in_session(base, "admin", ADMIN_PASSWORD)
        listed = ", ".join(f'"{p}"' for p in paths)
        script.write_text(WRK_SCRIPT % {"paths": listed, "token": token, "session": session})
        headers = {"Authorization": f"Bearer {token}", "Cookie": f"sessionid={session}"}
        no_redirects = urllib.request.build_opener(_NoRedirect)
        for path in paths:  # warm: every page answers itself (no redirect to sign-in) before the clock starts
            request = urllib.request.Request(base + path, headers=headers)
            with no_redirects.open(request, timeout=30) as answer:
                assert answer.status == 200, path

        jobs = []
        for i in range(args.jobs):
            body = {"prompt": f"a blue star {i}", "steps": args.steps, "seed": i}
            jobs.append(api(base, "POST", "/api/v1/projects/morning/jobs", token, body)["id"])
        # The viewers open their pages first (as people do before a busy hour), then the load starts while
        # the jobs run.
        viewers = Viewers(ws_base, token)
        connected = threading.Event()
        watching = viewers.run(jobs, args.viewers, connected)
        connected.wait(120)
        wrk = subprocess.Popen(
            [shutil.which("wrk") or "wrk", "-t", str(args.threads), "-c", str(args.connections)]
            + ["-d", f"{args.duration}s", "--timeout", "2s", "--latency", "-s", str(script), base],
            stdout=subprocess.PIPE,
            text=True,
        )
        output, _ = wrk.communicate(timeout=args.duration + 60)
        watching.join(300)
        figures = parse_wrk(output)
        good, problems = viewers.complete()
        return Result(
            processes=processes,
            rps=figures["rps"],
            p50=figures["p50"],
            p99=figures["p99"],
            longest=figures["longest"],
            longest_s=seconds(figures["longest"]),
            requests=figures["requests"],
            non_2xx=figures["non_2xx"],
            socket_errors=figures["socket_errors"],
            viewers_ok=good,
            viewers=args.viewers,
            problems=problems,
        )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def report(result: Result) -> None:
    errors = ", ".join(f"{k} {v}" for k, v in result.socket_errors.items())
    print(
        f"{result.processes} daphne process(es): {result.rps:8.1f} requests/s  p50 {result.p50:>8}  "
        f"p99 {result.p99:>8}  longest {result.longest:>8}  requests {result.requests}  "
        f"non-2xx {result.non_2xx}  socket errors: {errors}  viewers with every event "
        f"{result.viewers_ok}/{result.viewers}"
    )
    for problem in result.problems[:5]:
        print(f"    {problem}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=60, help="seconds of wrk load per run")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--viewers", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument(
        "--steps", type=int, default=150, help="steps per job (150: the jobs run for a while)"
    )
    parser.add_argument("--assets", type=int, default=2000, help="images in the gallery measured")
    parser.add_argument(
        "--processes", type=int, default=0, help="daphne processes of the second run (0: one per core)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")

    # The studio's own default (studio.launcher.web_processes): one per core, at most 8.
    many = args.processes or max(1, min(os.cpu_count() or 1, 8))
    data_dir = Path(tempfile.mkdtemp(prefix="studio-load-"))
    print(
        f"web tier under load: wrk -c {args.connections} -d {args.duration}s on 3 pages, {args.viewers} "
        f"websocket viewers on {args.jobs} jobs of {args.steps} steps, {args.assets} images, "
        f"{os.cpu_count()} cores"
    )
    try:
        single = measure(args, data_dir, 1, first=True)
        report(single)
        several = measure(args, data_dir, many, first=False)
        report(several)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    ratio = several.rps / single.rps if single.rps else float("nan")
    print(f"ratio requests/s {many} processes / 1 process: {ratio:.2f}x (target 1.5x)")
    for result in (single, several):
        checks = {
            "0 errors": result.errors == 0,
            "no request over 2 s": result.longest_s < 2.0 and result.socket_errors["timeout"] == 0,
            "every viewer got every event": result.viewers_ok == result.viewers,
        }
        marks = "  ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in checks.items())
        print(f"targets, {result.processes} process(es): {marks}")
    print(f"target 1.5x: {'yes' if ratio >= 1.5 else 'NO'}")


if __name__ == "__main__":
    main()
