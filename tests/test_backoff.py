"""The one backoff the stages retry with."""

from __future__ import annotations

from itertools import islice

from stream_eval.backoff import BATCH, STORE, Backoff


def test_the_delays_grow_to_their_bound_and_stay() -> None:
    assert list(islice(Backoff(0.5, 2.0, 3.0).delays(), 5)) == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert list(islice(STORE.delays(), 8)) == [0.5, 1, 2, 4, 8, 16, 30, 30]
    # a batch's attempts wait as they did before the one backoff: 0.5 s times the attempt
    assert list(islice(BATCH.delays(), 3)) == [0.5 * attempt for attempt in (1, 2, 3)]
    assert list(islice(Backoff(0.5, 1.0, 0.5).delays(), 3)) == [0.5, 0.5, 0.5]  # fixed
    assert list(islice(Backoff(5.0, 2.0, 1.0).delays(), 2)) == [1.0, 1.0]  # capped at once
