"""The stalled-partition watchdog's decision (stream_eval.runtime.stall_watch).

The end-to-end case, a killed worker's partition taken over and read, is
tests/test_clickhouse_outage.py::test_two_workers_in_one_group_share_a_server_with_exact_counts.
"""

from __future__ import annotations

from stream_eval.runtime.stall_watch import PartitionView, StallDetector, position_of


def view(end: int, position: int, topic: str = "traces", partition: int = 0) -> PartitionView:
    return PartitionView(topic, partition, end, position)


def test_position_is_after_the_last_read_else_committed_else_earliest() -> None:
    assert position_of(41, 10, 0) == 42
    assert position_of(None, 10, 0) == 10
    assert position_of(None, None, 7) == 7


def test_a_partition_with_waiting_messages_and_no_progress_is_stalled_after_the_wait() -> None:
    d = StallDetector(after=30)
    assert d.check([view(110, 0)], set(), now=0) == []
    assert d.check([view(110, 0)], set(), now=29) == []
    assert d.check([view(110, 0)], set(), now=30) == [view(110, 0)]
    # reported once, then watched again from scratch
    assert d.check([view(110, 0)], set(), now=31) == []
    assert d.check([view(110, 0)], set(), now=61) == [view(110, 0)]


def test_progress_restarts_the_clock() -> None:
    d = StallDetector(after=30)
    d.check([view(110, 0)], set(), now=0)
    assert d.check([view(110, 5)], set(), now=25) == []  # it moved
    assert d.check([view(110, 5)], set(), now=50) == []
    assert d.check([view(110, 5)], set(), now=55) == [view(110, 5)]


def test_caught_up_partitions_and_busy_topics_are_never_stalled() -> None:
    d = StallDetector(after=30)
    for t in (0, 100, 200):
        # read to the end: nothing waits
        assert d.check([view(110, 110)], set(), now=t) == []
        # the topic's stream holds messages (processing, or held on purpose)
        assert d.check([view(50, 0, topic="assembly")], {"assembly"}, now=t) == []


def test_a_partition_that_leaves_the_assignment_is_forgotten() -> None:
    d = StallDetector(after=30)
    d.check([view(110, 0, partition=1)], set(), now=0)
    d.check([], set(), now=20)  # revoked
    assert d.check([view(110, 0, partition=1)], set(), now=40) == []  # assigned again: new clock
    assert d.check([view(110, 0, partition=1)], set(), now=70) == [view(110, 0, partition=1)]
