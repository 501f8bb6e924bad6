"""The one backoff the stages retry with."""

from __future__ import annotations

from itertools import islice

from stream_eval.runtime.backoff import BATCH, KAFKA, STORE, Backoff


def test_the_delays_grow_to_their_bound_and_stay() -> None:
    assert list(islice(Backoff(0.5, 2.0, 3.0).delays(), 5)) == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert list(islice(STORE.delays(), 8)) == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert list(islice(BATCH.delays(), 3)) == [0.5, 1.0, 1.0]
    assert list(islice(KAFKA.delays(), 3)) == [0.5, 0.5, 0.5]
    assert list(islice(Backoff(5.0, 2.0, 1.0).delays(), 2)) == [1.0, 1.0]  # capped at once
