"""The allocators tuned for a worker that moves megabyte buffers between threads.

**glibc malloc** (``tune``).

The worker's batches are bytes of a few MB, made and freed by the event loop, the sink
thread, the producer's poll thread and the pool's feeder threads. With glibc's
defaults every thread may get its own arena (8 x cores), and the mmap threshold rises
after the first large frees until large buffers come from the arenas, which keep the
memory: the resident size grows by hundreds of MB that are free but never returned.
Two arenas and a fixed 256 KiB mmap threshold (large buffers mmapped, returned on
free) keep it near what is in use (measured in ``bench/``). No effect off glibc.

**chdb's jemalloc** (``tune_jemalloc``). The embedded ClickHouse allocates with its own
jemalloc, built to keep freed pages resident for 5 s (``dirty_decay_ms:5000``) and to
return them only when that allocator is called again (no background thread). Every
insert and merge frees tens of MB, so the worker's resident size swung by 200 MB between
batches. jemalloc reads ``JE_MALLOC_CONF`` once, when chdb is loaded; this sets it, unless
the operator has, to purge from a background thread after 250 ms (measured in
``bench/``: README, Benchmark).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger("stream_eval")

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 256 * 1024
ARENAS = 2
JEMALLOC_ENV = "JE_MALLOC_CONF"
JEMALLOC_CONF = "background_thread:true,dirty_decay_ms:250"


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


def tune_jemalloc() -> bool:
    """Set chdb's jemalloc options (an operator's own ``JE_MALLOC_CONF`` is kept). Call
    before chdb is imported; False when it was already loaded (too late)."""
    if "chdb" in sys.modules:
        return False
    os.environ.setdefault(JEMALLOC_ENV, JEMALLOC_CONF)
    return True
