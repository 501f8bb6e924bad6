"""glibc malloc tuned for a worker that moves megabyte buffers between threads.

The worker's batches are bytes of a few MB, made and freed by the event loop, the sink
thread, the producer's poll thread and the pool's feeder threads. With glibc's
defaults every thread may get its own arena (8 x cores), and the mmap threshold rises
after the first large frees until large buffers come from the arenas, which keep the
memory: the resident size grows by hundreds of MB that are free but never returned.
Two arenas and a fixed 256 KiB mmap threshold (large buffers mmapped, returned on
free) keep it near what is in use (measured in ``bench/``). No effect off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("stream_eval")

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 256 * 1024
ARENAS = 2


def tune() -> bool:
    """Apply the settings; False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_ARENA_MAX, ARENAS)) and bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    )
    if not ok:
        log.info("malloc settings not applied")
    return ok
