"""Prometheus metrics of a worker, read from the stages' own counters at scrape time.

Each stage keeps plain counters (no locks, nothing on the hot path); a source is any
object with a ``metrics()`` method yielding samples ``(family name, labels, value)``.
What each family is (its type, HELP, labels) is defined once, as a ``Family`` in
``metrics_catalog``; the collector serves every family of the worker's role from the
first scrape on, before any traffic: an unlabelled family at 0 when no source gives it a
value yet, a labelled one with the series its sources give (they give their known label
values at 0 from the start), or at least its HELP and TYPE. Prometheus scrapes
``http://<worker>:<metrics.port>/metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

Kind = Literal["counter", "gauge"]
Role = Literal["ingest", "judge"]  # the parts of the app a family belongs to
# family name (a Family's ``name``), labels, value
Sample = tuple[str, dict[str, str], float]
PREFIX = "stream_eval_"
log = logging.getLogger("stream_eval.metrics")


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family, as served and as documented (``docs/operators/metrics.md``)."""

    name: str  # without the prefix, and for a counter without ``_total``
    kind: Kind
    help: str  # the HELP line: what one unit of it is
    labels: tuple[str, ...] = ()
    roles: frozenset[Role] = frozenset({"ingest"})  # workers of which role serve it
    doc: str = ""  # more for operators: when it moves, what to read from it
    # the label values known in advance (documented; the sources give these at 0)
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def exposed(self) -> str:
        """The name Prometheus stores its samples under."""
        return PREFIX + self.name + ("_total" if self.kind == "counter" else "")


class MetricsSource(Protocol):
    def metrics(self) -> Iterable[Sample]: ...


class StageCounters(MetricsSource, Protocol):
    """What every stage's counters give: their samples, and a line for the worker's log
    (every 10 s)."""

    def report(self) -> str: ...


def dead_letter_samples(
    stage: str, counts: Mapping[str, int], known: Iterable[str] = ()
) -> Iterator[Sample]:
    """``dead_letters{stage, reason}``: every reason in ``known`` (served at 0 from the
    start), then every other reason counted."""
    for reason in {**dict.fromkeys(known), **counts}:
        yield "dead_letters", {"stage": stage, "reason": reason}, counts.get(reason, 0)


class SourcesCollector:
    """Every family of ``families`` at each scrape, with the samples of ``sources()`` (read
    anew at every scrape: a source added after the endpoint started is included)."""

    def __init__(
        self, families: Sequence[Family], sources: Callable[[], Iterable[MetricsSource]]
    ) -> None:
        self.families = {f.name: f for f in families}
        self.sources = sources
        self._warned: set[str] = set()

    def _warn_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.error(msg, *args)

    def collect(self) -> Iterator[Metric]:
        out: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for f in self.families.values():
            cls = CounterMetricFamily if f.kind == "counter" else GaugeMetricFamily
            out[f.name] = cls(PREFIX + f.name, f.help, labels=list(f.labels))
        given: set[str] = set()
        for src in list(self.sources()):
            try:
                samples = list(src.metrics())
            except Exception:  # one broken source must not hide the others
                log.exception("metrics of %r failed", src)
                continue
            for name, labels, value in samples:
                fam = self.families.get(name)
                if fam is None:
                    self._warn_once(name, "metric %r is not in metrics_catalog: not served", name)
                    continue
                if set(labels) != set(fam.labels):
                    self._warn_once(
                        f"{name}{sorted(labels)}", "metric %r with labels %s, not %s: not served",
                        name, sorted(labels), list(fam.labels),
                    )  # fmt: skip
                    continue
                out[name].add_metric([labels[k] for k in fam.labels], value)
                given.add(name)
        for name, f in self.families.items():
            if not f.labels and name not in given:  # e.g. its stage has not started yet
                out[name].add_metric([], 0.0)
        yield from out.values()


def serve(
    families: Sequence[Family],
    sources: Callable[[], Iterable[MetricsSource]],
    port: int,
    host: str = "127.0.0.1",
) -> CollectorRegistry:
    """Serve ``families`` with the samples of ``sources()`` on ``host:port`` (a daemon
    thread)."""
    registry = CollectorRegistry()
    registry.register(SourcesCollector(families, sources))
    start_http_server(port, addr=host, registry=registry)
    return registry
