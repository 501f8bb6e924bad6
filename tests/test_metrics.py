"""The metrics catalog, the collector and the operators' reference generated from it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, cast

import pytest
from faust.types import TP
from helpers import nonempty
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream_eval.assembly.buffer import TraceBuffer
from stream_eval.assembly.intake import IntakeCounters
from stream_eval.assembly.stage import AssemblyCounters
from stream_eval.config import Settings
from stream_eval.feedback.stage import FeedbackCounters
from stream_eval.ingest.stage import Counters
from stream_eval.judge.counters import JudgeCounters
from stream_eval.judge.pauses import PauseCounters
from stream_eval.metrics import Family, Sample, SourcesCollector
from stream_eval.metrics_catalog import (
    BY_NAME,
    DEAD_BY_STAGE,
    FAMILIES,
    families_for,
    reference_markdown,
)
from stream_eval.runtime.lag import ConsumerLag
from stream_eval.runtime.stall_watch import StallWatch
from stream_eval.runtime.steps import InOrder
from stream_eval.sessions.close import SessionCloser
from stream_eval.sink.store import Store
from stream_eval.sink.writer import SinkWriter
from stream_eval.windows.close import WindowCloser
from stream_eval.windows.watermarks import PartitionWatermarks

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "operators" / "metrics.md"


class _Consumer:
    _committed_offset: ClassVar[dict[Any, int]] = {}

    def assignment(self) -> list[Any]:
        return [TP("t", 0)]

    def highwater(self, tp: Any) -> int:
        return 5


async def _never(*_: Any) -> Any:
    raise AssertionError("not called")


def _sources(settings: Settings) -> list[Any]:
    """One of every metrics source a worker has, as it is at the worker's start (and a
    partition's watermark, which appears with its first batch)."""
    watermarks = PartitionWatermarks(_never)
    watermarks._wm[("t", 0)] = 1.0
    return [
        Counters(),
        FeedbackCounters(),
        JudgeCounters(),
        PauseCounters(),
        IntakeCounters(["traces", "logs"]),
        AssemblyCounters(TraceBuffer(settings.assembly)),
        InOrder(_never, _never, 2, "ingest"),
        WindowCloser(settings.windows, "t"),
        SessionCloser(settings.sessions, settings.windows, "t"),
        watermarks,
        SinkWriter(cast(Store, None)),
        StallWatch(None, set(), 30.0),
        ConsumerLag(cast(Any, SimpleNamespace(consumer=_Consumer()))),
    ]


def _scrape(families: tuple[Family, ...], sources: list[Any]) -> str:
    registry = CollectorRegistry()
    registry.register(SourcesCollector(families, lambda: sources))
    return generate_latest(registry).decode()


def _parsed(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_the_committed_reference_is_what_the_catalog_generates() -> None:
    assert DOC.read_text() == reference_markdown(), (
        "regenerate with `python -m stream_eval.metrics_catalog docs/operators/metrics.md`"
    )


def test_the_reference_lists_exactly_the_catalog() -> None:
    text = reference_markdown()
    rows = [line for line in text.splitlines() if line.startswith("| `stream_eval_")]
    named = [row.split("`")[1] for row in rows]
    assert named == [f.exposed for f in FAMILIES]
    assert len(set(named)) == len(named) == len(BY_NAME)


def test_every_source_gives_catalog_families_and_every_family_has_a_source(
    settings: Settings,
) -> None:
    given: dict[str, list[dict[str, str]]] = {}
    for src in nonempty(_sources(settings)):
        samples: list[Sample] = list(src.metrics())
        assert samples, src
        for name, labels, value in nonempty(samples):
            assert name in BY_NAME, f"{type(src).__name__} gives {name!r}, not in the catalog"
            fam = BY_NAME[name]
            assert tuple(sorted(labels)) == tuple(sorted(fam.labels)), name
            for label, v in labels.items():  # may be empty: a family without labels
                known = fam.values.get(label)
                assert known is None or v in known, (name, label, v)
            assert isinstance(value, (int, float))
            given.setdefault(name, []).append(labels)
    assert set(given) == set(BY_NAME)  # no family without a source, none stale


def test_known_label_values_are_given_at_zero_from_the_start(settings: Settings) -> None:
    """The sources as at the worker's start: every known label value of a family whose
    label values are all known in advance is there, at 0 (the spans_skipped reasons,
    the dead-letter reasons of each stage, the judge statuses...)."""
    from_traffic = (PartitionWatermarks, ConsumerLag)  # topic/partition labels
    sources = [s for s in _sources(settings) if not isinstance(s, from_traffic)]
    got: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for src in sources:
        for name, labels, value in src.metrics():
            got[(name, tuple(sorted(labels.items())))] = value
    checked = 0
    for fam in nonempty(FAMILIES):
        if not fam.labels or fam.name == "dead_letters" or set(fam.values) != set(fam.labels):
            continue
        combos: list[dict[str, str]] = [{}]
        for label in fam.labels:
            combos = [{**c, label: v} for c in combos for v in fam.values[label]]
        for c in nonempty(combos):
            assert got.get((fam.name, tuple(sorted(c.items())))) == 0, (fam.name, c)
            checked += 1
    assert checked > 40
    # dead_letters: each stage's own reasons
    dead = {k: v for k, v in got.items() if k[0] == "dead_letters"}
    expected = {
        ("dead_letters", (("reason", r), ("stage", s)))
        for s, reasons in DEAD_BY_STAGE.items()
        for r in reasons
    }
    assert set(dead) == expected and set(dead.values()) == {0}


def test_a_scrape_with_no_source_yet_serves_every_family(settings: Settings) -> None:
    fams = _parsed(_scrape(FAMILIES, []))
    assert set(fams) == {f.exposed.removesuffix("_total") for f in FAMILIES}
    for f in nonempty(FAMILIES):
        samples = fams[f.exposed.removesuffix("_total")].samples
        if f.labels:
            assert samples == []  # HELP and TYPE only
        else:
            assert [(s.name, s.value) for s in samples] == [(f.exposed, 0.0)]


def test_each_role_serves_its_families(settings: Settings) -> None:
    ingest = {f.name for f in families_for("ingest")}
    judge = {f.name for f in families_for("judge")}
    assert ingest | judge == set(BY_NAME) == {f.name for f in families_for("all")}
    assert {"judge_calls", "judge_results"} <= judge - ingest
    assert {"traces", "spans_skipped", "assembly_pieces"} <= ingest - judge
    assert {"messages", "dead_letters", "sink_calls", "consumer_lag"} <= ingest & judge
    text = _scrape(families_for("judge"), [JudgeCounters()])
    assert "stream_eval_judge_calls_total 0.0" in text
    assert "stream_eval_traces_sampled" not in text


def test_a_source_added_after_the_endpoint_started_is_served(settings: Settings) -> None:
    sources: list[Any] = []
    registry = CollectorRegistry()
    registry.register(SourcesCollector(FAMILIES, lambda: sources))
    counters = JudgeCounters()
    counters.calls = 7
    sources.append(counters)
    assert "stream_eval_judge_calls_total 7.0" in generate_latest(registry).decode()


class _Odd:
    def metrics(self) -> Iterator[Sample]:
        yield "no_such_family", {}, 1
        yield "judge_calls", {"extra": "label"}, 2
        yield "sink_calls", {}, 3


class _Broken:
    def metrics(self) -> Iterator[Sample]:
        raise RuntimeError("boom")


def test_samples_outside_the_catalog_are_refused_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    registry.register(SourcesCollector(FAMILIES, lambda: [_Broken(), _Odd()]))
    with caplog.at_level(logging.ERROR, "stream_eval.metrics"):
        text = generate_latest(registry).decode()
        generate_latest(registry)
    assert "no_such_family" not in text
    assert "stream_eval_judge_calls_total 0.0" in text  # the refused sample, not served
    assert "stream_eval_sink_calls_total 3.0" in text  # the good one of the same source
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert sum("no_such_family" in e for e in errors) == 1  # once, not at every scrape
    assert sum("judge_calls" in e for e in errors) == 1
    assert any("metrics of" in e for e in errors)  # the broken source
