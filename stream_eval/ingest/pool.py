"""Ingest step one (``ingest.prepare``) in worker processes, so that decode, checks and
row encoding use every core while the event loop serves Kafka and the sink thread writes.

The processes are started with ``spawn`` (the worker has threads: fork would copy their
locks), ignore Ctrl-C (the worker stops them) and die with the worker (Linux
``PR_SET_PDEATHSIG``): a worker killed with -9 leaves no orphans. A process that dies
breaks the pool: the batch fails (the caller retries it) and the next one gets a new pool.
``processes = 0`` runs the step on a thread of the worker instead.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from stream_eval import malloc
from stream_eval.config import Settings
from stream_eval.ingest.prepare import Prepared, prepare
from stream_eval.records import RawMessage

log = logging.getLogger("stream_eval.ingest")
T = TypeVar("T")

_settings: Settings | None = None  # in a pool process: set once by ``_init``
_PR_SET_PDEATHSIG = 1


def _set(settings: Settings) -> None:
    global _settings
    _settings = settings


def _init_process(settings: Settings, parent: int) -> None:
    _set(settings)
    malloc.tune()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the worker died while this process was starting
        os._exit(0)


def _ready() -> int:
    return os.getpid()


def _prepare(messages: list[RawMessage]) -> Prepared:
    assert _settings is not None, "pool process not initialised"
    return prepare(messages, _settings)


class PreparePool:
    """The processes, started by ``warm`` (or the first batch). A spawned process takes
    seconds to import what it runs; until one has answered, batches are prepared on a
    thread of the worker, so the first batch after a start does not wait for them."""

    def __init__(self, settings: Settings, processes: int) -> None:
        self.settings = settings
        self.processes = processes
        self._executor: Executor | None = None
        self._thread: Executor | None = None
        self._ready: list[Future[int]] = []

    def warm(self) -> None:
        """Start the processes now, in the background."""
        self._get()

    def _get(self) -> Executor:
        if self._executor is None:
            if self.processes:
                self._executor = ProcessPoolExecutor(
                    self.processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_process,
                    initargs=(self.settings, os.getpid()),
                )
                self._ready = [self._executor.submit(_ready) for _ in range(self.processes)]
            else:
                self._executor = self._on_thread()
        if self._ready and not any(f.done() for f in self._ready):
            return self._on_thread()  # no process up yet
        return self._executor

    def _on_thread(self) -> Executor:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, "prepare", _set, (self.settings,))
        return self._thread

    async def prepare(self, messages: list[RawMessage]) -> Prepared:
        return await self.run(_prepare, messages)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` (module-level, picklable) in a pool process: other CPU work of the
        worker (closing sessions) as well, off its interpreter lock."""
        executor = self._get()
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        except BrokenProcessPool:
            log.error("a prepare process died: starting a new pool (the batch is retried)")
            if self._executor is executor:
                self._executor = None
                executor.shutdown(wait=False, cancel_futures=True)
            raise

    def close(self) -> None:
        for ex in (self._executor, self._thread):
            if ex is not None:
                ex.shutdown(wait=True, cancel_futures=True)
        self._executor = self._thread = None
        self._ready = []
