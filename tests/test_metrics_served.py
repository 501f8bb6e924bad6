"""Every metric of the catalog (and of the operators' reference generated from it) is
served by a real worker from its start, before any traffic, and still after traffic of
every kind: JSON traces, OTLP (on the traces topic and through the assembly), feedback
and judge calls. Scraped as Prometheus scrapes it, against the real broker."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from helpers import nonempty
from prometheus_client.parser import text_string_to_metric_families

from stream_eval.config import Settings
from stream_eval.metrics_catalog import FAMILIES
from stream_eval.runner import WorkerProcess, free_port
from stream_eval.runtime.kafka_config import confluent_config
from stream_eval.runtime.topics import ensure_topics
from stream_eval.synthetic.mix import build_mix
from stream_eval.synthetic.otlp_encode import encode_otlp
from stream_eval.synthetic.publish import publish
from stream_eval.synthetic.traces import TraceFactory

pytestmark = pytest.mark.kafka

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(port: int) -> tuple[dict[str, str], Series]:
    """The families served (name as exposed -> type) and their samples."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    families, series = {}, {}
    for fam in text_string_to_metric_families(text):
        families[fam.name + ("_total" if fam.type == "counter" else "")] = fam.type
        for s in fam.samples:
            series[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, series


def _first_scrape(
    port: int, w: WorkerProcess, timeout: float = 120
) -> tuple[dict[str, str], Series]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _scrape(port)
        except (urllib.error.URLError, ConnectionError):
            assert w.proc is not None and w.proc.poll() is None, w.log_tail()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _assert_every_family_served(families: dict[str, str]) -> None:
    assert FAMILIES
    for f in FAMILIES:
        assert families.get(f.exposed) == f.kind, f.exposed


def _produce(settings: Settings, topic: str, values: list[bytes]) -> None:
    p = Producer(confluent_config(settings.kafka))
    for v in values:
        p.produce(topic, v)
    assert p.flush(30) == 0


def test_every_metric_is_served_from_the_start_and_after_traffic(
    isolated: Settings, tmp_path: Path
) -> None:
    from stream_eval.testing import Behaviour, StubOpenAI

    settings = isolated
    t = settings.topics
    ensure_topics(settings)
    port = free_port()
    with StubOpenAI(default=Behaviour(score=8)) as stub:
        env = {
            "STREAM_EVAL_METRICS__PORT": str(port),
            "STREAM_EVAL_JUDGE__BASE_URL": stub.base_url,
            "STREAM_EVAL_JUDGE__MODEL": "judge-pinned-1",
            "STREAM_EVAL_JUDGE__REQUESTS_PER_MINUTE": "6000",
            "STREAM_EVAL_SAMPLING__DEFAULT_RATE": "1",  # every trace judged
            "STREAM_EVAL_ASSEMBLY__DECISION_WAIT_SECONDS": "1",
            "STREAM_EVAL_ASSEMBLY__TICK_SECONDS": "0.2",
        }
        w = WorkerProcess(None, tmp_path / "worker.log", env)
        w.start()
        try:
            families, start = _first_scrape(port, w)

            # Before any traffic: every family, unlabelled ones and known label values at 0.
            _assert_every_family_served(families)
            for f in nonempty(FAMILIES):
                if not f.labels:
                    assert start[(f.exposed, ())] == 0, f.exposed
            for key in [
                ("stream_eval_judge_results_total", (("status", "scored"),)),
                ("stream_eval_judge_calls_total", ()),
                ("stream_eval_messages_total", (("stage", "judge"),)),
                ("stream_eval_spans_skipped_total", (("reason", "not_genai"),)),
                ("stream_eval_spans_skipped_total", (("reason", "genai_execute_tool"),)),
                (
                    "stream_eval_dead_letters_total",
                    (("reason", "too_many_bad_items"), ("stage", "ingest")),
                ),
                ("stream_eval_otlp_messages_total", (("signal", "traces"),)),
                ("stream_eval_assembled_traces_total", (("reason", "root_wait"),)),
            ]:
                assert start[key] == 0, key

            # Traffic of every kind.
            mix = build_mix(40, batch_size=10)
            publish(settings, mix.messages)  # JSON traces, some of them bad
            factory = TraceFactory(seed=5, start_ts=time.time() - 300)
            otlp = [[factory.next().trace for _ in range(2)] for _ in range(2)]
            _produce(settings, t.traces, [encode_otlp(otlp[0], "otlp_proto", extra_spans=1)])
            _produce(settings, t.otlp_spans, [encode_otlp(otlp[1], "otlp_proto", extra_spans=1)])
            published = [p.trace for p in mix.expected.published]
            feedback: list[dict[str, Any]] = [
                {"feedback_id": f"fb-{i}", "trace_id": tr["trace_id"], "kind": "thumbs_down",
                 "ts": tr["timestamp"] + 5}
                for i, tr in enumerate(published[:5])
            ]  # fmt: skip
            _produce(settings, t.feedback, [orjson.dumps(e) for e in feedback] + [b"{}"])

            topics = [t.traces, t.feedback, t.otlp_spans, t.otlp_assembly, t.judge_requests]
            w.wait_drained(settings, timeout=240, topics=topics)
            deadline = time.monotonic() + 60
            want = [
                ("stream_eval_messages_total", (("stage", "ingest"),)),
                ("stream_eval_messages_total", (("stage", "feedback"),)),
                ("stream_eval_messages_total", (("stage", "judge"),)),
                ("stream_eval_judge_calls_total", ()),
                ("stream_eval_judge_results_total", (("status", "scored"),)),
                ("stream_eval_otlp_messages_total", (("signal", "traces"),)),
                ("stream_eval_spans_skipped_total", (("reason", "not_genai"),)),
                ("stream_eval_feedback_events_total", ()),
                ("stream_eval_assembly_pieces_total", ()),
            ]
            while True:  # the last batches' counters are added as they settle
                families, after = _scrape(port)
                moved = [k for k in want if after.get(k, 0) > 0]
                if moved == want or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        finally:
            w.stop()
    assert moved == want, w.log_tail()
    assert stub.requests  # the judge was called

    # After traffic: still every family.
    _assert_every_family_served(families)
    assert after[("stream_eval_traces_total", (("stage", "ingest"),))] >= len(published)
    dead = {k: v for k, v in after.items() if k[0] == "stream_eval_dead_letters_total" and v}
    assert {dict(k[1])["stage"] for k in dead} >= {"ingest", "feedback"}
