"""Run by tests/test_sli_registry.py in its own process: a store written with the
checks as they are, then (``toxicity``) with one more check registered the way a new
check is (one entry in ``checks.CHECKS``: its name and its function) and
nothing else edited. Prints what the generated artifacts made of it, as JSON.

    python tests/sli_new_check.py STORE_PATH plain|toxicity
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from stream_eval import checks, config
from stream_eval.config import CheckSettings
from stream_eval.trace import CheckResult, Trace


def check_toxicity(trace: Trace, cfg: CheckSettings) -> CheckResult | None:
    """Flags outputs with a word from a list: enough for a check the pipeline runs."""
    return CheckResult("toxicity", passed="idiot" not in trace.output_text.lower())


def main(path: str, variant: str) -> dict[str, Any]:
    if variant == "toxicity":  # the new check's registration: before the rest is imported
        checks.CHECKS["toxicity"] = check_toxicity
    from stream_eval.grafana import macros
    from stream_eval.grafana.alerts import build_alerting
    from stream_eval.grafana.dashboards import build_dashboards
    from stream_eval.ingest.process import process_batch
    from stream_eval.records import RawMessage
    from stream_eval.sink.store import open_store
    from stream_eval.slis import COLUMNS
    from stream_eval.synthetic.traces import TraceFactory
    from stream_eval.testing.ingest import write_batch
    from stream_eval.windows.close import WindowCloser

    settings = config.Settings()
    settings.clickhouse.path = path
    base = time.time() // 3600 * 3600 - (2400 if variant == "plain" else 1200)
    factory = TraceFactory(seed=7 if variant == "plain" else 8, start_ts=base, max_step_s=1.0)
    messages = []
    for i in range(40):
        t = factory.chat().trace
        if i % 4 == 0:  # 10 of the 40 fail the new check
            t["gen_ai"]["output"]["messages"][0]["parts"][0]["content"] = "Read it, idiot."
        messages.append(RawMessage(settings.topics.traces, 0, i, t["timestamp"], orjson.dumps(t)))
    batch = process_batch(messages, settings)
    store = open_store(settings.clickhouse)
    try:
        write_batch(store, batch, settings)
        db = store.database
        # a later batch's progress, as the ingest stage records it: the newest event time
        # read has moved 15 minutes on, so the windows of the 40 traces close
        store.command(
            f"INSERT INTO {db}.stream_progress (kafka_topic, kafka_partition, first_offset, "
            f"last_offset, watermark, ingested_at) VALUES ('{settings.topics.traces}', 0, 40, "
            f"40, {base + 900}, {base + 900})"
        )
        closer = WindowCloser(settings.windows, settings.topics.traces)
        closer.run(store, now=base + 3600)
        minute_cols = {r["name"] for r in store.query(f"DESCRIBE TABLE {db}.sli_minute")}
        window_cols = {r["name"] for r in store.query(f"DESCRIBE TABLE {db}.sli_windows")}
        out: dict[str, Any] = {"minute_columns": sorted(minute_cols)}
        out["window_columns"] = sorted(window_cols)
        for name in ("judge_sli_minute", "judge_sli_windows"):
            described = store.query(f"DESCRIBE TABLE {db}.{name}")
            out[f"{name}_columns"] = sorted(r["name"] for r in described)
        if variant == "toxicity":
            out["minute"] = store.query(
                f"SELECT sum(toxicity_fail) AS fail, sum(toxicity_n) AS n, sum(traces) AS t "
                f"FROM {db}.sli_minute WHERE window_start >= toDateTime({int(base)}) "
                f"AND window_start < toDateTime({int(base) + 300})"
            )[0]
            out["windows"] = store.query(
                f"SELECT sum(toxicity_fail) AS fail, sum(toxicity_n) AS n "
                f"FROM {db}.sli_windows FINAL WHERE window_kind = 'tumbling' "
                f"AND window_start >= toDateTime({int(base)})"
            )[0]
            dashboards = build_dashboards(settings)
            panels = [
                p for d in dashboards.values() for p in d["panels"]
                if p.get("title") == "toxicity failure rate"
            ]  # fmt: skip
            out["panels"] = len(panels)
            at = datetime.fromtimestamp(base + 60, UTC)
            sql = macros.expand(
                panels[0]["targets"][0]["rawSql"],
                time_from=at - timedelta(hours=1),
                time_to=at + timedelta(hours=1),
                interval_s=60,
                variables={v: [macros.ALL] for v in ("route", "model_version", "prompt_version")},
            )
            out["panel_rows"] = len(store.query(sql))
            rules = build_alerting(settings)["rules.yaml"]["groups"]
            out["rule_slis"] = sorted(r["labels"]["sli"] for g in rules for r in g["rules"])
            out["cli_columns"] = [c[0] for c in COLUMNS]
        return out
    finally:
        store.close()


if __name__ == "__main__":
    print(orjson.dumps(main(sys.argv[1], sys.argv[2]), default=str).decode())
