"""The daemon's malloc arenas.

glibc gives each thread that allocates an arena of its own (up to 8 per core), and an arena
keeps what was freed in it; the daemon's watch, apply and Kafka threads would each hold one,
partly used. Two serve a process whose Python code runs one thread at a time; the daemon's peak
RSS, which bench/reconcile_bench.py reports, is lower by several MiB.
"""

from __future__ import annotations

import ctypes
import os

#: mallopt's parameter number for the arena limit (glibc's malloc.h)
M_ARENA_MAX = -8
ARENAS = 2


def limit_malloc_arenas() -> bool:
    """Whether the limit was set: glibc only, before the threads start; a MALLOC_ARENA_MAX in
    the environment is the operator's and wins."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_ARENA_MAX, ARENAS))
