"""The one shape of waiting between attempts: ``Backoff(first, factor, most)`` gives the
delays ``first, first * factor, ...`` up to ``most`` each. The stages retry through it
(a failing store: 0.5 s doubling to 30 s; a failing batch: 0.5, 1 and 1.5 s; Kafka's
transient answers: a fixed delay, ``Backoff(d, 1.0, d)``). The judge keeps its own loop,
which waits on its limiter and the provider's Retry-After (``judge.limits``)."""

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
BATCH = Backoff(0.5, 2.0, 1.5)  # a batch that failed: 0.5, 1 and 1.5 s for its 3 attempts
