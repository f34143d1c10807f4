"""An engine process ends with the worker rank that started it.

vLLM runs its engine core in a child process of the worker rank. When the rank
dies without shutting its engine down (SIGKILL, the OOM killer, a crash), the
engine core is adopted by init and lives on, holding its memory (on a GPU node
the device memory a replacement engine would need) although nothing can reach
it any more. Linux's parent-death signal ends it instead: asked for from inside
the engine-core process, the kernel sends it SIGTERM, which vLLM answers with
its own clean shutdown (its executor workers follow it through their death
pipe).

The kernel sends the signal when the *thread* that started the process ends.
The worker builds its engine on its main thread; an engine started from a
short-lived thread would be ended with that thread.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def end_with_parent(sig: int = signal.SIGTERM) -> bool:
    """In a multiprocessing child: get `sig` when the parent ends (at once if it
    already has). False where that is not possible (not Linux, not a child)."""
    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return False  # the engine runs in the worker's own process: nothing to tie
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        return False
    if os.getppid() != parent.pid:  # died before the prctl: no signal would come
        os.kill(os.getpid(), sig)
    return True
