"""Processes that must not outlive the one that started them (Linux; elsewhere a no-op), and processes that
yield the CPU to others."""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send this process ``sig`` when its parent process dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, sig)


def lower_priority(nice: int) -> None:
    """Run this process (and what it starts) ``nice`` steps below normal CPU priority: when the machine is
    busy, the others get the CPU first. Linux gives each session its own scheduling group ("autogroup"),
    inside which alone a plain nice value counts, so the group of a process that leads its own session is
    lowered too."""
    if nice <= 0:
        return
    os.nice(nice)
    with contextlib.suppress(OSError):  # no autogroups (a kernel without them, or a container)
        with open("/proc/self/autogroup", "w") as group:
            group.write(str(nice))
