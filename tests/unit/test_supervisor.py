"""The launcher's supervisor: a child that dies is restarted with a growing delay and the restart is
logged; only a child that keeps dying right after its start stops everything."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from studio.launcher import Child, Supervisor, embedded_worker, listening_sockets, web_children


def child(name: str, code: str) -> Child:
    return Child(name, [sys.executable, "-c", code], {})


def wait_exit(c: Child) -> None:
    assert c.proc is not None
    c.proc.wait(10)


def test_a_killed_child_is_restarted_after_a_delay_and_the_restart_is_logged():
    lines: list[str] = []
    supervisor = Supervisor(lines.append)
    redis = supervisor.add(child("redis", "import time; time.sleep(60)"))
    first = redis.proc
    try:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        now = time.monotonic()
        assert supervisor.check(now) is None
        assert lines == ["redis exited (-9); restarting it in 0.5 s."]
        assert supervisor.check(now + 0.1) is None and redis.proc is first, "not before its delay"
        assert supervisor.check(now + 0.6) is None
        assert redis.proc is not first and redis.proc.poll() is None
        assert lines[-1].startswith("redis restarted (pid ")
    finally:
        supervisor.shutdown()
    assert redis.proc.poll() is not None, "shutdown stops it"


def test_the_delay_doubles_while_a_child_keeps_dying_and_then_everything_stops():
    lines: list[str] = []
    supervisor = Supervisor(lines.append)
    worker = supervisor.add(child("worker", "raise SystemExit(3)"))
    steady = supervisor.add(child("daphne", "import time; time.sleep(60)"))
    now = time.monotonic()
    try:
        reason = None
        for _ in range(Supervisor.MAX_QUICK_DEATHS + 1):
            wait_exit(worker)
            now += 0.01
            reason = supervisor.check(now)
            if reason:
                break
            now = worker.restart_at
            assert supervisor.check(now) is None  # restarted
        delays = [line.rsplit(" in ", 1)[1] for line in lines if "restarting" in line]
        assert delays == ["0.5 s.", "1 s.", "2 s.", "4 s.", "8 s."]
        assert reason == "worker exited (3) 6 times in a row within 30 s of starting; stopping."
        assert steady.proc.poll() is None, "the others were left alone until then"
    finally:
        supervisor.shutdown()


def test_a_child_that_stayed_up_starts_again_from_the_shortest_delay():
    lines: list[str] = []
    supervisor = Supervisor(lines.append)
    web = supervisor.add(child("daphne", "import time; time.sleep(60)"))
    try:
        web.quick_deaths = 4  # it had died quickly before, then ran for a long time
        web.started_at -= Supervisor.STABLE_SECONDS + 1
        web.proc.send_signal(signal.SIGTERM)
        wait_exit(web)
        assert supervisor.check() is None
        assert lines == ["daphne exited (-15); restarting it in 0.5 s."]
    finally:
        supervisor.shutdown()


def test_web_processes_wait_for_a_burst_of_websocket_handshakes(settings):
    """500 pages opened at once queue their sockets' permission checks; with daphne's own 5 s most of
    them were dropped ("did not receive a valid HTTP response"). The wait is the site's setting."""
    import socket

    settings.STUDIO_WEBSOCKET_HANDSHAKE_SECONDS = 45
    with socket.socket() as sock:
        children = web_children([sock], 2, {})
    assert len(children) == 2
    for child in children:
        at = child.argv.index("--websocket_connect_timeout")
        assert child.argv[at + 1] == "45"


def test_a_child_can_run_below_normal_priority_and_the_embedded_worker_does(settings):
    """The embedded worker yields the CPU to the web processes (pages first on one machine). Linux schedules
    each session as a group, so the child's group is lowered as well as the child."""
    supervisor = Supervisor(lambda line: None)
    low = supervisor.add(Child("worker", [sys.executable, "-c", "import time; time.sleep(60)"], {}, nice=7))
    normal = supervisor.add(child("daphne", "import time; time.sleep(60)"))
    try:
        assert low.proc is not None and normal.proc is not None
        nice_of = lambda pid: int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[16])  # noqa: E731
        assert nice_of(low.proc.pid) - nice_of(normal.proc.pid) == 7
        group = Path(f"/proc/{low.proc.pid}/autogroup")
        if group.exists():
            assert group.read_text().split("nice")[1].strip() == "7"
    finally:
        supervisor.shutdown()
    assert embedded_worker(Path("/tmp"), {}).nice == settings.STUDIO_WORKER_NICE == 10
    settings.STUDIO_WORKER_NICE = 0
    assert embedded_worker(Path("/tmp"), {}).nice == 0


def test_each_web_process_gets_its_own_socket_on_the_port_and_connections_spread_over_them():
    """One shared socket let the process that woke first take a whole burst of connections; one socket per
    process (SO_REUSEPORT) lets the kernel spread them."""
    import socket

    sockets = listening_sockets("127.0.0.1", 0, 2)
    try:
        port = sockets[0].getsockname()[1]
        assert [s.getsockname()[1] for s in sockets] == [port, port]
        children = web_children(sockets, 2, {})
        fds = [child.argv[child.argv.index("--fd") + 1] for child in children]
        assert fds == [str(s.fileno()) for s in sockets] and [c.pass_fds for c in children] == [
            (s.fileno(),) for s in sockets
        ]
        with pytest.raises(OSError, match="in use"):
            listening_sockets("127.0.0.1", port, 2)  # taken: said at once, not shared with another studio
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
        accepted = []
        for sock in sockets:
            sock.setblocking(False)
            count = 0
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                count += 1
            accepted.append(count)
        for client in clients:
            client.close()
        assert sum(accepted) == 60
        assert min(accepted) >= 10, accepted
    finally:
        for sock in sockets:
            sock.close()
