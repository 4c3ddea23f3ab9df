"""Dying with one's parent process (Linux's PR_SET_PDEATHSIG)."""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int | None = None) -> None:
    """SIGKILL this process when its parent dies. `expected_parent`: the parent it was started
    by; if that one is already gone (it died before this took effect), exit at once."""
    parent = os.getppid() if expected_parent is None else expected_parent
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
