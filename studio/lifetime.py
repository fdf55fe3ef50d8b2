"""Processes that must not outlive the one that started them (Linux; elsewhere a no-op)."""

from __future__ import annotations

import signal
import sys


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send this process ``sig`` when its parent process dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, sig)
