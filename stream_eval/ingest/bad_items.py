"""At most ``ingest.max_dead_letters_per_message`` dead letters per message, one per item,
then one for all the message's other bad items.

A message of 300 KB can hold 100,000 bad items (``[1,1,...]``): one dead letter each would
flood the dead-letter topic and table. Past the limit, the bad items of a message become
one dead letter, reason ``too_many_bad_items``, that stands for all of them (``items``),
with the whole message as its payload (cut like every dead letter's). Nothing is lost
from the accounting: the message's ledger row and the counters count every item.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from stream_eval.dead_letters import TOO_MANY_BAD_ITEMS, DeadLetter, too_many_detail

M = TypeVar("M")  # what a dead letter belongs to: its message (``MessageOutcome``)


def bound_per_message(
    dead: list[tuple[M, DeadLetter]], limit: int, payload: Callable[[M], bytes]
) -> list[tuple[M, DeadLetter]]:
    """``dead`` with, per message (``M``, by identity), its first ``limit`` dead letters,
    in their order, and one standing for the rest, after them all; ``payload(o)``: the
    bytes of that message. ``dead`` itself when no message has more than ``limit``."""
    seen: dict[int, int] = {}
    for o, _ in dead:
        seen[id(o)] = seen.get(id(o), 0) + 1
    if all(n <= limit for n in seen.values()):
        return dead
    kept: list[tuple[M, DeadLetter]] = []
    rest: dict[int, tuple[M, list[DeadLetter]]] = {}
    count: dict[int, int] = {}
    for o, d in dead:
        n = count[id(o)] = count.get(id(o), 0) + 1
        if n <= limit:
            kept.append((o, d))
        else:
            rest.setdefault(id(o), (o, []))[1].append(d)
    for o, letters in rest.values():
        by_reason: dict[str, int] = {}
        for d in letters:
            by_reason[d.reason] = by_reason.get(d.reason, 0) + d.items
        items = sum(by_reason.values())
        kept.append(
            (
                o,
                DeadLetter(
                    TOO_MANY_BAD_ITEMS,
                    too_many_detail(items, limit, by_reason, "ingest.max_dead_letters_per_message"),
                    payload(o),
                    item=letters[0].item,
                    items=items,
                ),
            )
        )
    return kept
