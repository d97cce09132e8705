"""Make a worker process exit when the process that started it dies (even by SIGKILL).

A killed ``mouse-rl sweep --workers N`` must not leave its workers running,
computing for nobody and holding the caller's output pipes open. Each worker
calls :func:`die_with_parent` with its parent's pid: on Linux the kernel
sends it SIGKILL when the parent dies (``prctl(PR_SET_PDEATHSIG)``), and on
every platform a daemon thread polls the parent pid as a fallback.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1
#: Seconds between two checks of the parent pid by the fallback thread.
POLL_SECONDS = 0.5


def _set_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the polling thread still covers it


def _watch(parent: int, interval: float) -> None:
    while True:
        time.sleep(interval)
        if os.getppid() != parent:
            os._exit(1)


def die_with_parent(parent: int, interval: float = POLL_SECONDS) -> None:
    """Exit this process as soon as ``parent`` (the pid that started it) is gone.

    Call it first thing in a worker (e.g. a pool initializer), passing the pid
    the parent read with :func:`os.getpid` before starting the worker, so a
    parent that died before this call is noticed too.
    """
    _set_death_signal()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch, args=(parent, interval), daemon=True, name="parent-watch").start()
