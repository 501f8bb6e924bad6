"""The one shape of waiting between attempts: ``Backoff(first, factor, most)`` gives the
delays ``first, first * factor, ...`` up to ``most`` each. The stages retry through it
(a failing store: 0.5 s doubling to 30 s; a failing batch: 0.5 s, then 1 s; Kafka's
transient answers: a fixed 0.5 s). The judge keeps its own loop, which waits on its
limiter and the provider's Retry-After (``judge.limits``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    first: float = 0.5
    factor: float = 2.0
    most: float = 30.0

    def delays(self) -> Iterator[float]:
        """The delays before each retry, without end."""
        delay = self.first
        while True:
            yield min(delay, self.most)
            delay = min(delay * self.factor, self.most)


STORE = Backoff(0.5, 2.0, 30.0)  # a store that fails: held until it answers
BATCH = Backoff(0.5, 2.0, 1.0)  # a batch that failed: tried again soon, a few times
KAFKA = Backoff(0.5, 1.0, 0.5)  # a transient answer from Kafka: asked again at once
