"""A change of the live judge never reads as a change of product quality.

Traffic of one route, of steady quality, is judged by the real judge stage (the real openai
SDK against the local stub) first with judge ``judge-a``, which passes every answer, then,
from SWITCH on, with ``judge-b``, which fails every one. Every judge SLI is read from what
stream-eval generated (the committed dashboards and alert rules, the window closer, the
CLI's table): each reads within one judge, named with it, so no number is the mix (0.5)
that a judge-blind SLI would show over the range.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from helpers import nonempty

from stream_eval.config import JudgeSettings, SamplingSettings, Settings
from stream_eval.grafana import macros
from stream_eval.ingest.process import process_batch
from stream_eval.judge.budget import DailyBudget
from stream_eval.judge.client import JudgeClient
from stream_eval.judge.request import encode_judge_request
from stream_eval.judge.stage import JudgeStage
from stream_eval.records import RawMessage
from stream_eval.rubrics import ALL_RUBRICS
from stream_eval.sink.store import Store
from stream_eval.sink.writer import SinkWriter
from stream_eval.sli_registry import JUDGE_COUNTER_NAMES, late_name
from stream_eval.slis import COLUMNS, current_slis
from stream_eval.synthetic.traces import TraceFactory
from stream_eval.testing import StubOpenAI
from stream_eval.testing.ingest import write_batch
from stream_eval.windows.close import WindowCloser

GRAFANA = Path(__file__).resolve().parent.parent / "grafana"
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
MINUTES = 40
SWITCH = T0 + timedelta(minutes=20)  # judge-a before, judge-b from here
END = T0 + timedelta(minutes=MINUTES)
ALL = {"route": [macros.ALL], "model_version": [macros.ALL], "prompt_version": [macros.ALL]}


def _score(body: dict[str, Any]) -> tuple[float, str]:
    return (9.0, "fine") if body["model"] == "judge-a" else (2.0, "harsh")


def _stage(settings: Settings, writer: SinkWriter) -> JudgeStage:
    async def send(value: bytes, headers: list[tuple[str, bytes]]) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    client = JudgeClient.from_settings(settings.judge)
    return JudgeStage(settings, client, writer, send, DailyBudget(settings.judge_budget_for))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from stream_eval.config import ClickHouseSettings
    from stream_eval.sink.store import open_store

    path = tmp_path_factory.mktemp("judge-segments") / "chdb"
    writer = SinkWriter(open_store(ClickHouseSettings(path=str(path))))
    f = TraceFactory(seed=3, start_ts=T0.timestamp())
    with StubOpenAI(score_fn=_score) as stub:
        settings = {
            model: Settings(
                sampling=SamplingSettings(default_rate=1.0),
                judge=JudgeSettings(
                    base_url=stub.base_url,
                    model=model,
                    requests_per_minute=6000,
                    rate_window_seconds=1.0,
                    max_concurrency=8,
                    backoff_base_seconds=0.01,
                ),
            )
            for model in ("judge-a", "judge-b")
        }
        loop = asyncio.new_event_loop()
        stages = {m: _stage(s, writer) for m, s in settings.items()}
        for minute in range(MINUTES):
            at = T0 + timedelta(minutes=minute)
            traces = [f.chat("").trace for _ in range(3)]
            for i, t in enumerate(traces):
                t["timestamp"] = at.timestamp() + 10 * i + 5
            msg = RawMessage(
                "llm-traces", 0, minute, at.timestamp() + 40, json.dumps(traces).encode()
            )
            batch = process_batch([msg], settings["judge-a"])
            write_batch(writer.store, batch, settings["judge-a"], at=at.timestamp() + 41)
            judge = "judge-a" if at < SWITCH else "judge-b"
            requests = [
                RawMessage("judge", 0, minute * 3 + i, at.timestamp() + 42, encode_judge_request(p))
                for i, p in enumerate(batch.processed)
                if p.sample_reason
            ]
            assert len(requests) == 3
            loop.run_until_complete(stages[judge].handle(requests))
        loop.close()
    yield writer.store, settings["judge-b"]
    writer.close()


def _run(store: Store, sql: str, t0: datetime = T0, t1: datetime = END, **kw: Any) -> list[Any]:
    expanded = macros.expand(sql, time_from=t0, time_to=t1, interval_s=60, **kw)
    return store.query(expanded)


def _panel(uid: str, title: str) -> str:
    for path in (GRAFANA / "dashboards").glob("*.json"):
        d = json.loads(path.read_text())
        if d["uid"] != uid:
            continue
        for p in d["panels"]:
            for q in [p, *p.get("panels", [])]:
                if q.get("title") == title:
                    return str(q["targets"][0]["rawSql"])
    raise AssertionError(f"no panel {title!r} on {uid}")


def _rule(sli: str) -> str:
    doc = yaml.safe_load((GRAFANA / "provisioning/alerting/rules.yaml").read_text())
    (rule,) = [r for g in doc["groups"] for r in g["rules"] if r["labels"]["sli"] == sli]
    return str(rule["data"][0]["model"]["rawSql"])


def test_each_result_names_its_judge_and_the_rubric_versions_of_its_route(seeded: Any) -> None:
    store, settings = seeded
    rows = store.query(
        "SELECT judge_model, rubric, rubric_versions, count() AS n, min(ts) AS first, "
        "max(ts) AS last FROM stream_eval.judge_results FINAL GROUP BY judge_model, rubric, "
        "rubric_versions ORDER BY judge_model, rubric"
    )
    versions = ",".join(f"{n}@{ALL_RUBRICS[n].version}" for n in settings.rubrics_for("chat"))
    assert [(r["judge_model"], r["rubric"], r["rubric_versions"], r["n"]) for r in rows] == [
        ("judge-a", "helpfulness", versions, 60),  # chat: helpfulness is the one that applies
        ("judge-b", "helpfulness", versions, 60),
    ]


def test_the_pass_rate_panel_draws_each_judge_as_its_own_series(seeded: Any) -> None:
    store, _ = seeded
    sql = _panel("stream-eval-slis", "Judge pass rate (estimate, 95% interval)")
    rows = _run(store, sql, variables=ALL)
    series: dict[str, list[Any]] = {}
    for r in nonempty(rows):
        series.setdefault(r["slice"], []).append(r)
    slices = {name.split(" · ")[0] for name in series}
    assert len(series) == 2 * len(slices)  # each slice: a series per judge
    switch = SWITCH.strftime("%Y-%m-%d %H:%M:%S")  # as the store returns times
    for name, points in nonempty(series.items()):
        judge = name.split(" · ")[1].split(" ")[0]
        assert judge in ("judge-a", "judge-b"), name
        for r in nonempty(points):
            assert (r["time"] < switch) == (judge == "judge-a"), name
            assert r["judge_pass_rate"] == (1.0 if judge == "judge-a" else 0.0)


def test_the_overview_stat_is_the_current_judges_not_a_mix(seeded: Any) -> None:
    store, _ = seeded
    sql = _panel("stream-eval-slis", "Judge pass rate (estimate, 95% interval), current judge")
    (row,) = _run(store, sql, variables=ALL)
    assert row["judge_pass_rate_value"] == 0.0  # judge-b's; judge-blind it would be 0.5
    (before,) = _run(store, sql, t1=SWITCH - timedelta(seconds=1), variables=ALL)
    assert before["judge_pass_rate_value"] == 1.0


def test_the_estimates_table_has_a_row_per_judge(seeded: Any) -> None:
    store, _ = seeded
    rows = _run(
        store, _panel("stream-eval-slis", "Judge estimates by slice and judge"), variables=ALL
    )
    per_slice: dict[tuple[str, str, str], list[tuple[str, int, float]]] = {}
    for r in nonempty(rows):
        key = (r["route"], r["model_version"], r["prompt_version"])
        per_slice.setdefault(key, []).append(
            (r["judge"].split(" ")[0], r["judged"], r["pass_rate"])
        )
    for got in nonempty(per_slice.values()):  # the newest judge of a slice first
        assert [(j, p) for j, _, p in got] == [("judge-b", 0.0), ("judge-a", 1.0)]
    totals = {
        j: sum(n for got in per_slice.values() for jj, n, _ in got if jj == j)
        for j in ("judge-a", "judge-b")
    }
    assert totals == {"judge-a": 60, "judge-b": 60}


def test_the_alert_has_an_instance_per_judge_labelled_with_it(seeded: Any) -> None:
    store, settings = seeded
    rows = store.query(
        macros.expand(
            _rule("judge_pass_rate"), time_from=T0, time_to=END, interval_s=60, variables={},
            frontend=False,
        )
    )  # fmt: skip
    got = {(r["judge_model"], r["route"]): r["value"] for r in rows}
    assert got == {("judge-a", "chat"): 1.0, ("judge-b", "chat"): 0.0}
    assert {r["rubric_versions"] for r in nonempty(rows)} == {
        ",".join(f"{n}@{ALL_RUBRICS[n].version}" for n in settings.rubrics_for("chat"))
    }
    # the pass-rate rule fires for judge-b only: judge-a's instance stays normal
    threshold = settings.alerts.judge_pass_rate_min
    assert {k for k, v in got.items() if v < threshold} == {("judge-b", "chat")}


def test_the_per_rubric_panels_are_per_judge(seeded: Any) -> None:
    store, _ = seeded
    rows = _run(store, _panel("stream-eval-judge", "Pass rate by rubric"), variables=ALL)
    assert {r["rubric"].split(" · ")[1] for r in nonempty(rows)} == {"judge-a", "judge-b"}


def test_closed_windows_keep_the_judges_apart(seeded: Any) -> None:
    store, settings = seeded
    closer = WindowCloser(settings.windows, "llm-traces")
    report = closer.close_at(store, END.timestamp() + 3600, END.timestamp() + 3600)
    assert report.closed > 0
    late = ", ".join(f"sum({late_name(c)}) AS {late_name(c)}" for c in JUDGE_COUNTER_NAMES)
    rows = store.query(
        "SELECT window_kind, window_start, judge_model, sum(judge_scored) AS scored, "
        f"sum(judge_passed) AS passed, {late} FROM stream_eval.judge_sli_windows FINAL "
        "GROUP BY window_kind, window_start, judge_model ORDER BY window_kind, window_start"
    )
    tumbling = [r for r in rows if r["window_kind"] == "tumbling"]
    assert len(tumbling) == MINUTES  # a minute each, of one judge
    for r in nonempty(tumbling):
        judge = "judge-a" if r["window_start"] < SWITCH.strftime("%Y-%m-%d %H:%M:%S") else "judge-b"
        assert (r["judge_model"], r["scored"]) == (judge, 3)
        assert r["passed"] == (3 if judge == "judge-a" else 0)
    # a five-minute step hour-long window over the switch: a row for each judge
    judges: dict[str, set[str]] = {}
    for r in rows:
        if r["window_kind"] == "hopping":
            judges.setdefault(r["window_start"], set()).add(r["judge_model"])
    assert {"judge-a", "judge-b"} in judges.values()
    # every result reached ClickHouse before its window closed: nothing late
    assert all(r[late_name("judge_scored")] == 0 for r in nonempty(rows))
    # and the closed windows add up to the minute view, judge by judge
    minute = store.query(
        "SELECT judge_model, sum(judge_scored) AS n FROM stream_eval.judge_sli_minute "
        "GROUP BY judge_model ORDER BY judge_model"
    )
    closed = store.query(
        "SELECT judge_model, sum(judge_scored) AS n FROM stream_eval.judge_sli_windows FINAL "
        "WHERE window_kind = 'tumbling' GROUP BY judge_model ORDER BY judge_model"
    )
    assert (
        minute
        == closed
        == [{"judge_model": "judge-a", "n": 60}, {"judge_model": "judge-b", "n": 60}]
    )
    # a result that reaches ClickHouse after its window closed (within the refresh's
    # windows.refresh_hours): late, in its judge's row
    (one,) = store.query(
        "SELECT * EXCEPT (inserted_at) FROM stream_eval.judge_results FINAL "
        "WHERE judge_model = 'judge-b' ORDER BY ts DESC LIMIT 1"
    )
    one["trace_id"] = "f" * 32
    store.insert("judge_results", orjson.dumps(one) + b"\n")
    closer.close_at(store, END.timestamp() + 3600 + 120, END.timestamp() + 3600)  # a refresh
    (row,) = store.query(
        "SELECT judge_scored, late_judge_scored, late_judge_passed FROM "
        "stream_eval.judge_sli_windows FINAL WHERE window_kind = 'tumbling' AND "
        f"window_start = toStartOfMinute(toDateTime64('{one['ts']}', 3)) AND route = "
        f"'{one['route']}' AND model_version = '{one['model_version']}' AND "
        f"prompt_version = '{one['prompt_version']}' AND judge_model = 'judge-b'"
    )
    assert (row["late_judge_scored"], row["late_judge_passed"]) == (1, 0)


def test_the_cli_shows_the_current_judge_and_its_pass_rate(seeded: Any) -> None:
    store, _ = seeded
    _, rows = current_slis(store, MINUTES + 5, by_slice=False)
    (row,) = rows
    assert row["judge"].startswith("judge-b ")
    titles = [c[0] for c in COLUMNS]
    assert row[f"c{titles.index('judge pass %')}"] == 0.0
    assert row[f"c{titles.index('calls')}"] == 3 * MINUTES


def test_the_score_distributions_are_the_current_judges(seeded: Any) -> None:
    store, _ = seeded
    (b,) = store.query(
        "SELECT count() AS n FROM stream_eval.judge_results FINAL WHERE judge_model = 'judge-b'"
    )  # 60, and one more if the late result of the windows' test is in
    rows = _run(store, _panel("stream-eval-slis", "Judge score distribution"), variables=ALL)
    assert {r["score_bucket"]: r["judgments"] for r in rows} == {"2": b["n"]}  # judge-b's
    # (that panel's range is by judged_at: when the stage judged, now)
    later = datetime.now(UTC) + timedelta(minutes=5)
    sql = _panel("stream-eval-judge", "Score distribution by rubric")
    by_rubric = _run(store, sql, t1=later, variables=ALL)
    assert [(r["score_bucket"], r["helpfulness"]) for r in by_rubric] == [("2", b["n"])]
    before = _run(
        store, _panel("stream-eval-slis", "Judge score distribution"),
        t1=SWITCH - timedelta(seconds=1), variables=ALL,
    )  # fmt: skip
    assert {r["score_bucket"]: r["judgments"] for r in before} == {"9": 60}  # judge-a's
