"""Prometheus metrics of a worker, read from the stages' own counters at scrape time.

Each stage keeps plain counters (no locks, nothing on the hot path); a source is any
object with a ``metrics()`` method yielding samples, and the collector turns them into
metric families when Prometheus scrapes ``http://<worker>:<metrics.port>/metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any, Literal, Protocol

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

Kind = Literal["counter", "gauge"]
# name (without _total), kind, help, labels, value
Sample = tuple[str, Kind, str, dict[str, str], float]
PREFIX = "stream_eval_"
log = logging.getLogger("stream_eval.metrics")


class MetricsSource(Protocol):
    def metrics(self) -> Iterable[Sample]: ...


class SourcesCollector:
    def __init__(self, sources: list[Any]) -> None:
        self.sources = sources  # read at every scrape: stages added later are included

    def collect(self) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for src in list(self.sources):
            try:
                samples = list(src.metrics())
            except Exception:  # one broken source must not hide the others
                log.exception("metrics of %r failed", src)
                continue
            for name, kind, help_, labels, value in samples:
                fam = families.get(name)
                if fam is None:
                    cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                    fam = families[name] = cls(PREFIX + name, help_, labels=sorted(labels))
                fam.add_metric([labels[k] for k in sorted(labels)], value)
        yield from families.values()


def serve(sources: list[Any], port: int, host: str = "0.0.0.0") -> CollectorRegistry:
    """Serve the metrics of ``sources`` on ``host:port`` (a daemon thread)."""
    registry = CollectorRegistry()
    registry.register(SourcesCollector(sources))
    start_http_server(port, addr=host, registry=registry)
    return registry
