"""Loaded by every Python process of a studio under test (its folder is put on PYTHONPATH): records each
socket connection and name lookup the process makes, and stops any that would leave this machine before it
happens (the audit hook runs before the system call). Forked children (Celery's pool, the embedded beat)
keep the hook and say so.

Only ``STUDIO_NETWORK_WATCH_LOG`` switches it on. ``STUDIO_NETWORK_WATCH_ALLOW`` adds host names of
configured services; ``STUDIO_NETWORK_WATCH_CALL_OUT=<word>`` makes the process whose command line holds
that word try one outbound connection, to prove the watcher catches it.
"""

import ipaddress
import json
import os
import socket
import sys
import threading
import time

LOG = os.environ.get("STUDIO_NETWORK_WATCH_LOG")
LOCAL_NAMES = {"localhost", "ip6-localhost", "ip6-loopback", socket.gethostname()}
LOOKUPS = {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr"}


def _local(host):
    if host is None or host == "":
        return True  # a passive or local-only lookup
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host).strip("[]")
    allowed = {h for h in os.environ.get("STUDIO_NETWORK_WATCH_ALLOW", "").split(",") if h}
    if host in LOCAL_NAMES or host in allowed:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def _record(event, target, allowed):
    line = json.dumps(
        {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "argv": " ".join(sys.argv)[:300],
            "event": event,
            "target": target,
            "allowed": allowed,
        }
    )
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _hook(event, args):
    if event in LOOKUPS:
        host = args[0]
        target = repr(host)
    elif event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        sock, address = args[0], args[-1]
        if getattr(sock, "family", None) == socket.AF_UNIX or not isinstance(address, tuple):
            return  # a local socket file, or a send on a connected socket (already checked)
        host = address[0]
        target = repr(address)
    else:
        return
    allowed = _local(host)
    _record(event, target, allowed)
    if not allowed:
        raise PermissionError(f"network watch: {event} to {host!r} would leave this machine")


def _call_out():
    time.sleep(1.0)
    try:  # TEST-NET-1: documentation only, and the hook stops it before any packet is sent
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    except OSError:
        pass


if LOG:
    sys.addaudithook(_hook)
    _record("process.start", "", True)
    os.register_at_fork(after_in_child=lambda: _record("process.fork", "", True))
    word = os.environ.get("STUDIO_NETWORK_WATCH_CALL_OUT")
    if word and word in " ".join(sys.argv):
        threading.Thread(target=_call_out, daemon=True).start()
