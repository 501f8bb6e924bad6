"""A worker asked to stop exits within its grace, whatever state its shutdown is in.

Faust stops its services one by one and waits for each: a worker told to stop while it
joins its group, rebalances, drains a batch or waits on ClickHouse can sit there for
minutes (``wait_empty``, a join waiting out another member's session). Nothing is lost
by cutting that short: every stage acks a message only once its results are durable,
and offsets are committed only for acked messages, so what a forced exit leaves behind
is read again by the next owner of the partition.

``BoundedWorker`` is Faust's worker with one addition: the first stop signal starts a
watchdog; if the worker has not exited ``grace`` seconds later it ends the process at
once (exit status 143, 128 + SIGTERM) after saying so on stderr.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import faust

FORCED_EXIT_STATUS = 128 + signal.SIGTERM


class BoundedWorker(faust.Worker):
    def __init__(self, app: faust.App, *, grace: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.grace = grace
        self._watchdog: threading.Thread | None = None

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Thread(
                target=_exit_after, args=(self.grace, signal.name), daemon=True,
                name="stream-eval-shutdown-watchdog",
            )  # fmt: skip
            self._watchdog.start()
        super()._schedule_shutdown(signal)


def _exit_after(grace: float, why: str) -> None:
    threading.Event().wait(grace)
    sys.stderr.write(
        f"stream-eval: still stopping {grace:g}s after {why} "
        "(kafka.shutdown_grace_seconds); exiting now. Nothing unwritten was committed: "
        "the uncommitted messages are read again.\n"
    )
    sys.stderr.flush()
    os._exit(FORCED_EXIT_STATUS)
