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
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from stream_eval import malloc
from stream_eval.config import Settings
from stream_eval.ingest.prepare import Prepared, prepare
from stream_eval.pipeline import RawMessage

log = logging.getLogger("stream_eval.ingest")

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


def _prepare(messages: list[RawMessage]) -> Prepared:
    assert _settings is not None, "pool process not initialised"
    return prepare(messages, _settings)


class PreparePool:
    def __init__(self, settings: Settings, processes: int) -> None:
        self.settings = settings
        self.processes = processes
        self._executor: Executor | None = None

    def _get(self) -> Executor:
        if self._executor is None:
            if self.processes:
                self._executor = ProcessPoolExecutor(
                    self.processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_process,
                    initargs=(self.settings, os.getpid()),
                )
            else:
                self._executor = ThreadPoolExecutor(1, "prepare", _set, (self.settings,))
        return self._executor

    async def prepare(self, messages: list[RawMessage]) -> Prepared:
        executor = self._get()
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, _prepare, messages)
        except BrokenProcessPool:
            log.error("a prepare process died: starting a new pool (the batch is retried)")
            if self._executor is executor:
                self._executor = None
                executor.shutdown(wait=False, cancel_futures=True)
            raise

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
