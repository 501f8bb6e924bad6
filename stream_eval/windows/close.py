"""Closing SLI windows when the watermark passes them, and refreshing their late counts.

The watermark of an input partition is the newest event time read from it (recorded
with every ingest batch in ``stream_progress``). The stream's watermark is the minimum
over the partitions, as in Kafka Streams and Flink, so a slow or lagging partition
holds windows open; a partition that has written nothing for
``windows.idle_partition_seconds`` stops holding them (Flink's idleness). A window
closes when the watermark passes its end plus ``windows.allowed_lateness_seconds``.

One closer runs per consumer group (a Faust leader timer). Each run, on the sink's
thread (so no write interleaves with it in the embedded store):

1. records the newly closed windows in ``window_closes`` (their ``closed_at``);
2. writes their rows to ``sli_windows`` and ``judge_sli_windows`` (``windows.sql``);
3. every ``windows.refresh_seconds``, rewrites the rows of the windows closed in the
   last ``windows.refresh_hours`` with the same counters and current ``late_*``.

A crash between the steps loses nothing: a window recorded as closed but without rows
gets them at the next refresh, and rewriting a row changes only its late counts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from stream_eval.config import WindowSettings
from stream_eval.metrics import Sample
from stream_eval.sink.literals import sql_str
from stream_eval.sink.store import Store
from stream_eval.windows.sql import WindowKind, close_sql, judge_close_sql, unclosed_windows_sql

# At most this many windows of a kind are closed in one pass (a watermark far ahead of
# the last closed window catches up over several passes).
MAX_WINDOWS_PER_RUN = 10_000


def window_kinds(w: WindowSettings) -> tuple[WindowKind, ...]:
    return (
        WindowKind("tumbling", w.tumbling_seconds, w.tumbling_seconds),
        WindowKind("hopping", w.hopping_size_seconds, w.hopping_step_seconds),
    )


def stream_watermark(store: Store, topic: str, idle_s: float, now: float) -> float | None:
    """The minimum over the partitions of ``topic`` of their watermarks, leaving out idle
    partitions unless all are idle; None before anything was read."""
    db = store.database
    rows = store.query(
        "SELECT kafka_partition, toFloat64(max(watermark)) AS wm, "
        "toFloat64(max(ingested_at)) AS last "
        f"FROM {db}.stream_progress FINAL WHERE kafka_topic = {sql_str(topic)} "
        "GROUP BY kafka_partition"
    )
    if not rows:
        return None
    active = [float(r["wm"]) for r in rows if now - float(r["last"]) <= idle_s]
    return min(active or [float(r["wm"]) for r in rows])


@dataclass(slots=True)
class CloseReport:
    watermark: float | None = None
    closed: int = 0  # windows (all slices of one window count once)
    refreshed: bool = False


class WindowCloser:
    def __init__(self, settings: WindowSettings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.kinds = window_kinds(settings)
        self._last_refresh = 0.0
        self.windows_closed = 0
        self.last = CloseReport()
        self.frontier: dict[str, int] = {}

    def metrics(self) -> Iterator[Sample]:
        yield "windows_closed", {}, self.windows_closed
        yield "stream_watermark_seconds", {}, self.last.watermark or 0.0  # 0: none yet
        for kind in self.kinds:  # 0 until its first window is closed
            end = self.frontier.get(kind.name, 0)
            yield "windows_closed_until_seconds", {"kind": kind.name}, end

    def report(self) -> str:
        wm = self.last.watermark
        return (
            f"windows: {self.windows_closed} closed, watermark "
            f"{'-' if wm is None else time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(wm))}"
        )

    def run(self, store: Store, now: float | None = None) -> CloseReport:
        """One closing pass (blocking: call it on the sink's thread)."""
        now = time.time() if now is None else now
        wm = stream_watermark(store, self.topic, self.settings.idle_partition_seconds, now)
        return self.close_at(store, now, wm)

    def close_at(self, store: Store, now: float, wm: float | None) -> CloseReport:
        """One closing pass at the stream watermark ``wm`` (None: nothing read yet)."""
        w = self.settings
        report = CloseReport()
        report.watermark = wm
        if wm is None:
            return report
        db = store.database
        refresh = now - self._last_refresh >= w.refresh_seconds
        first: int | None = None
        for kind in self.kinds:
            frontier = closed_until = self._frontier(store, kind)
            if frontier == 0:  # nothing closed yet: start at the first event read
                first = self._first_event(store) if first is None else first
                if first is None:
                    continue
                frontier = first // kind.step_s * kind.step_s
            upto = int(wm) - w.allowed_lateness_seconds
            # By time: every window whose end is in (frontier, upto], empty or not, so an
            # order of arrival that leaves a window empty when the watermark passes it
            # (shuffled input, a partition ahead of the others) cannot skip it.
            starts = [
                e - kind.size_s
                for e in range(
                    (frontier // kind.step_s + 1) * kind.step_s,
                    min(upto, frontier + MAX_WINDOWS_PER_RUN * kind.step_s) + 1,
                    kind.step_s,
                )
                if e >= kind.size_s
            ]
            last = starts[-1] + kind.size_s if starts else frontier
            self.frontier[kind.name] = last if starts else closed_until  # the metric
            lo = min(frontier, last - int(w.refresh_hours * 3600)) if refresh else frontier
            # Windows behind the first closed one that only late traces reached (events
            # older than the first one read): closed when a refresh finds them.
            backfill = (
                [int(r["w"]) for r in store.query(unclosed_windows_sql(db, kind, lo, frontier))]
                if refresh and lo < frontier
                else []
            )
            closing = backfill + starts
            if closing:
                values = ", ".join(
                    f"('{kind.name}', {s}, {s + kind.size_s}, {wm:.3f})" for s in closing
                )
                store.command(
                    f"INSERT INTO {db}.window_closes "
                    f"(window_kind, window_start, window_end, watermark) VALUES {values}"
                )
                report.closed += len(closing)
            # One statement writes the windows just closed and, when due, rewrites those
            # closed in the last refresh_hours with their current late counts.
            if closing or refresh:
                store.command(close_sql(db, kind, w.allowed_lateness_seconds, lo, last))
                store.command(judge_close_sql(db, kind, lo, last))
        if refresh:
            self._last_refresh = now
            report.refreshed = True
        self.windows_closed += report.closed
        self.last = report
        return report

    @staticmethod
    def _first_event(store: Store) -> int | None:
        """The event time (unix s) of the oldest trace written, None before any."""
        rows = store.query(
            "SELECT count() AS n, toInt64(toUnixTimestamp(min(ts))) AS first "
            f"FROM {store.database}.traces"
        )
        return int(rows[0]["first"]) if rows and int(rows[0]["n"]) else None

    @staticmethod
    def _frontier(store: Store, kind: WindowKind) -> int:
        rows = store.query(
            f"SELECT toUInt64(toUnixTimestamp(max(window_end))) AS e "
            f"FROM {store.database}.window_closes WHERE window_kind = '{kind.name}'"
        )
        return int(rows[0]["e"]) if rows else 0
