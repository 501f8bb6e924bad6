"""Commit acked offsets as soon as a piece settles, not on Faust's commit timer.

Faust commits what was acked every ``broker_commit_interval`` (2.8 s): a worker that
has written a batch leaves it uncommitted for up to that long, so a restart reads it
again and the group's lag stays above zero after the work is done. ``CommitSoon`` is
called after each ack; it starts one commit, and if more acks come while that commit
is in flight, one more after it (Faust lets one commit run at a time; a second caller
would only wait for the first and commit nothing new). The timer still runs beside it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("stream_eval")


class CommitSoon:
    def __init__(self, app: Any) -> None:
        self.app = app
        self._task: asyncio.Future[None] | None = None
        self._again = False
        self.commits = 0

    def __call__(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True  # acked while a commit runs: one more after it
            return
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await self.app.consumer.commit()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a rebalance, a coordinator move: the timer retries
                log.info("commit after settle failed (%r); left to the commit timer", exc)
                return
            self.commits += 1
            if not self._again:
                return


def ack_all(app: Any, messages: list[Any], commit: Callable[[], None]) -> None:
    """Ack a settled batch's messages, then ask for a commit (``CommitSoon``)."""
    for message in messages:
        message.ack(app.consumer)
    commit()
