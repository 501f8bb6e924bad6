"""What a revision of an emitted trace says about itself, in its Kafka headers.

Log records exported after their spans (the Collector's logs pipeline batches on its own)
can be read after their trace was assembled and emitted. The assembly then reads the
emitted trace back from the traces topic, joins them, and emits the whole trace again: a
*revision*, keyed by the same trace id, so it lands on the same partition after the
trace it revises. The ingest writes its rows under the same keys (route, trace id, span
id), replacing the earlier ones, and produces judge requests only for the calls that had
no content before (the others were sampled, and judged, from the earlier emission).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stream_eval.sink.literals import sql_str

# --- the ledger's record of an emitted trace --------------------------------------------

# The columns of the latest ``assembled_traces`` row of a trace that a revision carries on.
_LAST = (
    "revision", "traces_partition", "traces_offset", "kafka_topic", "kafka_partition",
    "first_offset", "last_offset", "pieces", "spans", "duplicate_spans", "log_records",
    "logs_joined", "orphan_logs", "llm_spans", "has_root", "reason", "wait_s",
)  # fmt: skip


def emitted_sql(db: str, trace_ids: Iterable[str]) -> str:
    """Per trace emitted before: the digests of every piece it was emitted with, and its
    latest emission's row (a revision's row holds the whole trace)."""
    ids = ", ".join(sql_str(t) for t in trace_ids)
    # aliased apart from the columns: an alias named as a column would stand for it inside
    # the other aggregates
    last = ", ".join(f"argMax({c}, (revision, emitted_at)) AS last_{c}" for c in _LAST)
    return (
        f"SELECT trace_id, groupUniqArrayArray(piece_digests) AS digests, {last} "
        f"FROM {db}.assembled_traces WHERE trace_id IN ({ids}) GROUP BY trace_id"
    )


@dataclass(slots=True)
class Emitted:
    """A trace as the ledger says it was emitted last."""

    trace_id: str
    digests: set[str]
    row: dict[str, Any]  # the _LAST columns

    @classmethod
    def from_row(cls, r: Mapping[str, Any]) -> Emitted:
        return cls(str(r["trace_id"]), set(r["digests"]), {c: r[f"last_{c}"] for c in _LAST})

    @property
    def position(self) -> tuple[int, int] | None:
        """Where on the traces topic it went; None: not emitted (no LLM call in it) or not
        recorded (a ledger row of an earlier version)."""
        p, o = int(self.row["traces_partition"]), int(self.row["traces_offset"])
        return (p, o) if p >= 0 and o >= 0 else None
