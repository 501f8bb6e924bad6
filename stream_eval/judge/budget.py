"""Daily judge spend per route, with reservations so concurrent calls cannot overshoot.

A call reserves its worst-case cost (estimated input tokens, ``max_output_tokens``
of output) before it starts and settles to the actual cost after; a route whose
spend plus reservations would pass its daily budget is skipped, not judged, and the
skip is recorded. The day is the UTC date. Spend already recorded today is loaded
from ClickHouse at start, so a restart does not reset the budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime


def budget_key(route: str, partition: int) -> str:
    """The budget of one route on one partition of the judge-requests topic."""
    return f"{route}\x1f{partition}"


def partition_budgets(
    limit_for: Callable[[str], float | None], partitions: int
) -> Callable[[str], float | None]:
    """Per ``budget_key``: the route's daily budget split evenly over the partitions. A
    partition is judged by one worker of the group at a time and its spend is reloaded
    from ClickHouse by whichever worker takes it over, so the group together spends each
    route's budget once, however many workers share the topic."""

    def limit(key: str) -> float | None:
        route = key.split("\x1f", 1)[0]
        total = limit_for(route)
        return None if total is None else total / partitions

    return limit


def utc_day(t: float) -> date:
    return datetime.fromtimestamp(t, UTC).date()


class DailyBudget:
    def __init__(
        self,
        limit_for: Callable[[str], float | None],
        spent_today: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limit_for = limit_for
        self._clock = clock
        today = utc_day(clock())
        self._spent: dict[tuple[date, str], float] = {
            (today, route): usd for route, usd in (spent_today or {}).items()
        }
        self._reserved: dict[tuple[date, str], float] = {}

    def _key(self, route: str) -> tuple[date, str]:
        return (utc_day(self._clock()), route)

    def spent(self, route: str) -> float:
        return self._spent.get(self._key(route), 0.0)

    def try_reserve(self, route: str, estimate_usd: float) -> bool:
        """Reserve ``estimate_usd`` for a call on ``route``; False when over the budget."""
        limit = self._limit_for(route)
        key = self._key(route)
        if limit is not None:
            committed = self._spent.get(key, 0.0) + self._reserved.get(key, 0.0)
            if committed + estimate_usd > limit:
                return False
        self._reserved[key] = self._reserved.get(key, 0.0) + estimate_usd
        return True

    def settle(self, route: str, estimate_usd: float, actual_usd: float) -> None:
        """Replace a reservation by what the call really cost (0 when it never ran)."""
        key = self._key(route)
        self._reserved[key] = max(0.0, self._reserved.get(key, 0.0) - estimate_usd)
        self._spent[key] = self._spent.get(key, 0.0) + actual_usd
