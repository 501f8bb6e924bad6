"""Measuring a consumer process from outside, as a user would: wall time from the
process's start to zero committed lag of its group, and the resident memory of its whole
process tree sampled from ``/proc`` (the joint peak of the sums, not a sum of peaks).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from stream_eval.config import Settings
from stream_eval.runner import tree_rss_mb
from stream_eval.runtime.kafka_config import confluent_config


class CommittedLag:
    """A group's lag on a fully published topic, read without joining the group."""

    def __init__(self, settings: Settings, topic: str, group: str) -> None:
        self.c = Consumer(confluent_config(settings.kafka, **{"group.id": group}))
        parts = self.c.list_topics(topic, timeout=10).topics[topic].partitions
        self.tps = [TopicPartition(topic, p) for p in parts]
        self.end = {
            tp.partition: self.c.get_watermark_offsets(tp, timeout=10)[1] for tp in self.tps
        }

    def lag(self) -> int:
        got = self.c.committed(self.tps, timeout=10)
        return sum(max(self.end[tp.partition] - max(tp.offset, 0), 0) for tp in got)

    def close(self) -> None:
        self.c.close()


@dataclass
class Outside:
    started_at: float  # unix time the process was started
    wall_s: float  # process start to zero committed lag
    zero_lag_at: float  # unix time zero lag was first seen
    peak_mb: float  # the largest sampled RSS of the whole process tree


def measure(
    proc: subprocess.Popen[bytes],
    started: float,
    lag: CommittedLag,
    timeout: float = 3600.0,
    every: float = 0.1,
    on_sample: Callable[[], None] | None = None,
) -> Outside:
    """Poll until the group's lag is zero (raises if the process dies first). ``started``:
    ``time.monotonic()`` just before the process was started."""
    started_at = time.time() - (time.monotonic() - started)
    peak = 0.0
    while True:
        peak = max(peak, tree_rss_mb(proc.pid))
        if on_sample is not None:
            on_sample()
        if lag.lag() == 0:
            return Outside(started_at, time.monotonic() - started, time.time(), peak)
        if proc.poll() is not None and lag.lag() > 0:
            raise RuntimeError(f"the process exited with {proc.returncode} before zero lag")
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"not at zero lag after {timeout}s")
        time.sleep(every)
