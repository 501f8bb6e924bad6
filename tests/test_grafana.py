"""Grafana dashboards and alert rules, tested without a Grafana server.

Two hours of synthetic traffic are seeded into an embedded ClickHouse (chdb) through
the real pipeline and sink. Every panel and alert query is then read from the
*generated files*, expanded the way the ClickHouse plugin expands its macros, and run.
Two incidents are injected: a refusal spike on route ``chat`` right after its prompt
moves from v3 to v4, and a grounding outage on ``support-rag``. The refusal rule must
fire for exactly the new prompt's slices, the burn-rate rules only for support-rag,
and no rule may fire over the clean period before.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from helpers import nonempty

from stream_eval.agent_run import AgentRun
from stream_eval.checks.sessions import SessionSettings
from stream_eval.config import ClickHouseSettings, RouteSettings, SamplingSettings, Settings
from stream_eval.grafana import macros
from stream_eval.grafana.generate import check, committed_settings, generate
from stream_eval.ingest.process import process_batch
from stream_eval.judge.request import JudgeRequest, decode_judge_request
from stream_eval.judge.units import run_request
from stream_eval.records import ProcessedTrace, RawMessage
from stream_eval.rubrics import UNIT_RUBRICS
from stream_eval.sessions.close import SessionCloser
from stream_eval.sink.store import Store, open_store
from stream_eval.sink.writer import SinkWriter
from stream_eval.sli_registry import JUDGE_GRAIN, SLIS
from stream_eval.synthetic.traces import MODEL_VERSIONS, TraceFactory
from stream_eval.testing.ingest import write_batch
from stream_eval.trace import trace_dimensions

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
MINUTES = 120
END = T0 + timedelta(minutes=MINUTES)
PROMPT_SWITCH = T0 + timedelta(minutes=70)  # chat: v3 -> v4, refusals jump to ~40%
GROUNDING_OUTAGE = T0 + timedelta(minutes=60)  # support-rag: ~85% ungrounded from here
ALL = macros.ALL
ALL_VARS = {"route": [ALL], "model_version": [ALL], "prompt_version": [ALL]}


# -- the generated artefacts, parsed --------------------------------------------------------


@pytest.fixture(scope="module")
def settings() -> Settings:
    return committed_settings(ROOT)


def _load_yaml(rel: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((GRAFANA / rel).read_text())
    return doc


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        d = json.loads(path.read_text())
        out[d["uid"]] = d
    return out


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    doc = _load_yaml("provisioning/alerting/rules.yaml")
    return [r for g in doc["groups"] for r in g["rules"]]


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # panels of a collapsed row
    return out


# What the rules that are not about a slice are about.
_ALERT_LABELS = {
    "judge_agreement": ("judge_model", "rubric", "rubric_version"),
    "online_offline_divergence": ("route", "metric"),
    "judge_canary": ("judge_model", "rubric", "set_version"),
    # a judge SLI's instances: per slice and judge
    **{k: JUDGE_GRAIN.keys for k, s in SLIS.items() if s.alert and s.grain == JUDGE_GRAIN},
}


def _rule(rules: list[dict[str, Any]], sli: str) -> dict[str, Any]:
    (rule,) = [r for r in rules if r["labels"]["sli"] == sli and "burn" not in r["uid"]]
    return rule


# -- seeding -------------------------------------------------------------------------------


def _minute_traces(f: TraceFactory, rng: random.Random, minute: int) -> list[dict[str, Any]]:
    at = T0 + timedelta(minutes=minute)
    after_switch = at >= PROMPT_SWITCH
    outage = at >= GROUNDING_OUTAGE
    traces = []
    for i in range(8):
        refusal = rng.random() < (0.4 if after_switch else 0.02)
        t = f.chat("refusal" if refusal else "").trace
        t["prompt"]["version"] = "v4" if after_switch else "v3"
        # conversations of five minutes; one user in four asks about a password, again
        t["session_id"] = f"chat-{minute // 5}-{i}"
        if i % 4 == 0 and minute % 5:
            t["gen_ai"]["input"]["messages"][0]["parts"][0]["content"] = "Reset my password?"
        traces.append(t)
    for _ in range(16):
        ungrounded = rng.random() < (0.85 if outage else 0.02)
        traces.append(f.rag("ungrounded" if ungrounded else "").trace)
    for _ in range(5):
        traces.append(f.code("empty" if rng.random() < 0.01 else "").trace)
    for _ in range(4):
        traces.append(f.extract("bad_json" if rng.random() < 0.02 else "").trace)
    start = at.timestamp()
    for t in traces:
        t["timestamp"] = round(start + rng.uniform(0, 59.5), 3)
    return traces


def _judge_rows(p: ProcessedTrace, rng: random.Random) -> list[dict[str, Any]]:
    t = p.trace
    rubrics = ["helpfulness"] + (["faithfulness"] if t.documents else [])
    rows = []
    for rubric in rubrics:
        r = rng.random()
        status = "scored" if r < 0.9 else "failed" if r < 0.95 else "skipped"
        bad = bool(p.failed_checks)
        score = float(rng.randint(1, 4) if bad else rng.randint(6, 10))
        scored = status == "scored"
        rows.append(
            {
                **trace_dimensions(t),
                "rubric": rubric,
                "rubric_version": "1+abcdef12",
                "rubric_versions": ",".join(f"{r}@1+abcdef12" for r in rubrics),
                "judge_model": "gpt-4o-mini-2024-07-18",
                "judge_model_version": "gpt-4o-mini-2024-07-18" if scored else "",
                "status": status,
                "score": score if scored else None,
                "scale_min": 1,
                "scale_max": 10,
                "passed": (1 if score >= 7 else 0) if scored else None,
                "reason": "",
                "error": "" if scored else ("unparseable" if status == "failed" else "budget"),
                "detail": "",
                "attempts": 0 if status == "skipped" else rng.choice([1, 1, 1, 2]),
                "input_tokens": 900,
                "output_tokens": 60,
                "cost_usd": 0 if status == "skipped" else 0.00017,
                "latency_ms": 800.0,
                "sample_reason": p.sample_reason,
                "sample_prob": p.sample_prob,
                "requested_at": t.start_time + 1,
                "judged_at": t.start_time + 3 + rng.random() * 5,
            }
        )
    return rows


def _unit_judge_row(req: JudgeRequest, rubric: str, rng: random.Random) -> dict[str, Any]:
    """A whole unit's result, as the judge writes it for the request the closer or the
    ingest sent."""
    score = float(rng.randint(2, 10))
    return {
        **req.dimensions(), "unit": req.unit, "rubric": rubric, "rubric_version": "1+abcdef12",
        "judge_model": "gpt-4o-mini-2024-07-18", "status": "scored", "score": score,
        "scale_min": 1, "scale_max": 10, "passed": int(score >= 7), "cost_usd": 0.001,
        "sample_reason": req.sample_reason, "sample_prob": req.sample_prob,
        "requested_at": req.ts + 1, "judged_at": req.ts + 3,
    }  # fmt: skip


def _feedback_row(p: ProcessedTrace, rng: random.Random, n: int) -> dict[str, Any]:
    t = p.trace
    if p.failed_checks and rng.random() < 0.5:
        kind = "thumbs_down"
    else:
        kind = rng.choices(
            ["thumbs_up", "thumbs_down", "regenerate", "edit", "abandon"], [60, 8, 15, 10, 7]
        )[0]
    delay = rng.uniform(2, 90)
    return {
        "feedback_id": f"fb-{n}",
        "trace_id": t.trace_id,
        "span_id": t.span_id,
        "kind": kind,
        "value": None,
        "user_id": f"u{rng.randint(1, 50)}",
        "ts": t.start_time + delay,  # joined to its trace by the feedback_v view
        "kafka_topic": "feedback",
        "kafka_partition": 0,
        "kafka_offset": n,
        "ingested_at": t.start_time + delay + 1,
    }


def _ndjson(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def _seed_settings() -> Settings:
    """deploy/stream-eval.toml, with extract-json expecting JSON (so the JSON check runs)."""
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("STREAM_EVAL_"):
                mp.delenv(key)
        mp.setenv("STREAM_EVAL_CONFIG", str(ROOT / "deploy" / "stream-eval.toml"))
        return Settings(routes={"extract-json": RouteSettings(checks={"expects_json": True})})


def _seed(store: Store) -> None:
    settings = _seed_settings()
    f = TraceFactory(seed=11, start_ts=T0.timestamp())
    rng = random.Random(5)
    writer_store = SinkWriter(store)
    offset = 0
    judge: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    every: list[ProcessedTrace] = []
    for minute in range(MINUTES):
        traces = _minute_traces(f, rng, minute)
        msg_ts = (T0 + timedelta(minutes=minute + 1)).timestamp()
        messages = []
        for i in range(0, len(traces), 6):  # JSON arrays of a few traces, as producers batch
            value = orjson.dumps(traces[i : i + 6])
            messages.append(RawMessage("llm-traces", 0, offset, msg_ts, value))
            offset += 1
        if minute % 10 == 0:  # some bad input: undecodable, and schema-invalid
            messages.append(RawMessage("llm-traces", 0, offset, msg_ts, b'{"trace_id": '))
            messages.append(RawMessage("llm-traces", 0, offset + 1, msg_ts, b'{"route": "x"}'))
            offset += 2
        batch = process_batch(messages, settings)
        ingested_at = msg_ts + 0.5 + rng.random() * (20 if minute in (30, 31) else 2)
        write_batch(writer_store.store, batch, settings, at=ingested_at)
        every += batch.processed
        for p in batch.processed:
            if p.sample_reason:
                judge.extend(_judge_rows(p, rng))
            if rng.random() < 0.15:
                feedback.append(_feedback_row(p, rng, len(feedback)))
    # the sessions of those conversations, closed as the worker's closer closes them
    cfg = SessionSettings(gap_seconds=120, escalation_pattern="(?i)password")
    sent: list[tuple[bytes, bytes]] = []
    sampling = SamplingSettings(session_rate=0.3)
    closer = SessionCloser(cfg, settings.windows, "llm-traces", sampling, sent.extend)
    assert closer.run(store, now=msg_ts) > 50
    units = [decode_judge_request(v) for _, v in sent]
    # and agent runs: some calls' traces judged whole, as the ingest sends them
    units += [
        decode_judge_request(run_request(
            AgentRun(p.trace.trace_id, p.trace.route, "", p.trace.start_time,
                     p.trace.start_time, last_call_at=p.trace.start_time, steps=1,
                     tool_steps=0, model_version=p.trace.model_version,
                     prompt_version=p.trace.prompt_version), "rate", 0.2))
        for p in every[::40]
    ]  # fmt: skip
    assert {u.unit for u in nonempty(units)} == {"session", "run"}
    judge += [_unit_judge_row(u, r, rng) for u in units for r in UNIT_RUBRICS[u.unit]]
    (seen,) = store.query(
        "SELECT sum(rephrases) AS r, sum(escalated) AS e FROM stream_eval.sessions FINAL"
    )
    assert seen["r"] and seen["e"], seen
    store.insert("judge_results", _ndjson(judge))
    store.insert("feedback", _ndjson(feedback))
    store.insert("review_labels", _ndjson(_label_rows(judge, rng)))
    store.insert("offline_results", _ndjson(_offline_rows(rng)))
    store.insert("judge_canary_runs", _ndjson(_canary_runs()))


def _canary_runs() -> list[dict[str, Any]]:
    """Daily drift-canary runs of one set: a baseline, steady runs, the last one a drift."""
    return [
        {"run_id": f"c{d}", "run_at": (T0 - timedelta(days=5 - d)).timestamp(),
         "set_version": "a1b2c3d4e5f6", "judge_model": "judge-pinned-1",
         "rubric": "helpfulness", "rubric_version": "1", "items": 0 if d == 0 else 50,
         "mean_shift": -1.8 if d == 5 else 0.02,
         "up": 0 if d == 5 else 3, "down": 41 if d == 5 else 2,
         "p_value": None if d == 0 else (1e-12 if d == 5 else 1.0), "drift": int(d == 5),
         "baseline_runs": min(d, 5), "cost_usd": 0.01}
        for d in range(6)
    ]  # fmt: skip


def _label_rows(judge: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """People label some judged results: they agree with the judge four times in five."""
    rows = []
    for i, j in enumerate(r for r in judge if r["status"] == "scored"):
        if i % 7:
            continue
        agree = rng.random() < 0.8
        human_pass = bool(j["passed"]) == agree
        rows.append({
            "label_id": f"l{i}", "trace_id": j["trace_id"], "span_id": j["span_id"],
            "route": j["route"], "reviewer": "ana", "rubric": j["rubric"],
            "rubric_version": j["rubric_version"], "verdict": "pass" if human_pass else "fail",
            "score": 8.0 if human_pass else 3.0, "judge_model": j["judge_model"],
            "judge_score": j["score"], "judge_passed": j["passed"], "source": "import",
            "labelled_at": j["judged_at"] + 600,
        })  # fmt: skip
    return rows


def _offline_rows(rng: random.Random) -> list[dict[str, Any]]:
    """An offline run of a golden dataset during the seeded hours."""
    rows = []
    for i in range(60):
        route = ("support-rag", "chat")[i % 2]
        checks = [
            "empty_output",
            "pii",
            "refusal",
            *(["grounding"] if route == "support-rag" else []),
        ]
        failed = [c for c in checks if rng.random() < 0.05]
        rows.append({
            "run_id": "run-1", "dataset": "support", "dataset_version": 1,
            "example_id": f"e{i}", "route": route, "passed": int(not failed), "failures": [],
            "checks": checks, "failed_checks": failed, "judge_json": "{}", "source": "offline",
            "ran_at": (T0 + timedelta(minutes=30)).timestamp(),
        })  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One embedded store for the module: chdb holds one session per process."""
    path = tmp_path_factory.mktemp("grafana-chdb") / "chdb"
    s = open_store(ClickHouseSettings(path=str(path)))
    try:
        _seed(s)
        yield s
    finally:
        s.close()


def _run(store: Store, sql: str) -> list[dict[str, Any]]:
    try:
        return store.query(sql)
    except Exception as exc:  # show the expanded SQL with the ClickHouse error
        raise AssertionError(f"{exc}\n--- SQL ---\n{sql}") from None


# -- evaluating an alert rule as Grafana does -----------------------------------------------


def _rule_sql(rule: dict[str, Any], at: datetime) -> str:
    (query,) = [d for d in rule["data"] if d["datasourceUid"] != "__expr__"]
    rng = query["relativeTimeRange"]
    return macros.expand(
        query["model"]["rawSql"],
        time_from=at - timedelta(seconds=rng["from"]),
        time_to=at - timedelta(seconds=rng["to"]),
        interval_s=query["model"]["intervalMs"] // 1000,
        variables={},
        frontend=False,
    )


Labels = tuple[tuple[str, str], ...]


def _evaluate(rule: dict[str, Any], rows: list[dict[str, Any]]) -> dict[Labels, bool]:
    """Labels -> firing, running the rule's server-side expressions on the query's rows.

    Each row of a table-format result is one series (a number), labelled with its string
    columns. Reduce passes a number through; threshold compares it.
    """
    values: dict[str, dict[Labels, float]] = {}
    (query,) = [d for d in rule["data"] if d["datasourceUid"] != "__expr__"]
    series = {}
    for row in rows:
        labels = tuple((k, v) for k, v in sorted(row.items()) if isinstance(v, str))
        assert labels not in series, f"duplicate labels {labels}"
        series[labels] = float(row["value"])
    values[query["refId"]] = series
    for d in rule["data"]:
        m = d["model"]
        if d["datasourceUid"] != "__expr__":
            continue
        src = values[m["expression"]]
        if m["type"] == "reduce":
            values[d["refId"]] = dict(src)
        elif m["type"] == "threshold":
            ev = m["conditions"][0]["evaluator"]
            (limit,) = ev["params"]
            above = ev["type"] == "gt"
            assert ev["type"] in ("gt", "lt")
            values[d["refId"]] = {
                k: float(v > limit if above else v < limit) for k, v in src.items()
            }
        else:
            raise AssertionError(f"unexpected expression type {m['type']}")
    return {k: v == 1.0 for k, v in values[rule["condition"]].items()}


def _firing(store: Store, rule: dict[str, Any], at: datetime) -> set[tuple[str, str, str]]:
    """(route, model_version, prompt_version) of the alert instances firing at ``at``."""
    rows = _run(store, _rule_sql(rule, at))
    out = set()
    for labels, firing in _evaluate(rule, rows).items():
        if firing:
            d = dict(labels)
            out.add((d["route"], d["model_version"], d["prompt_version"]))
    return out


# -- the files ------------------------------------------------------------------------------


def test_committed_files_are_current(settings: Settings) -> None:
    stale = check(ROOT, settings)
    assert not stale, f"regenerate with `python -m stream_eval.grafana.generate`: {stale}"


def test_generation_is_deterministic(settings: Settings) -> None:
    a, b = generate(settings), generate(settings)
    assert a == b
    assert all(text.endswith("\n") for text in a.values())


def test_dashboard_structure(dashboards: dict[str, dict[str, Any]]) -> None:
    ds = _load_yaml("provisioning/datasources/clickhouse.yaml")
    uids = {d["uid"] for d in ds["datasources"]}
    assert set(dashboards) == {"stream-eval-slis", "stream-eval-judge"}
    for d in nonempty(dashboards.values()):
        assert isinstance(d["schemaVersion"], int)
        panels = _panels(d)
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), "panel ids must be unique"
        for v in nonempty(d["templating"]["list"]):
            assert v["datasource"]["uid"] in uids
            assert v["multi"] and v["includeAll"]
        for p in nonempty(panels):
            if p["type"] == "row":
                continue
            assert p["datasource"]["uid"] in uids, p["title"]
            assert p["targets"], p["title"]
            for t in nonempty(p["targets"]):
                assert t["datasource"]["uid"] in uids
                assert t["editorType"] == "sql" and t["rawSql"]
                assert t["format"] == (0 if p["type"] == "timeseries" else 1)
        for a in nonempty(d["annotations"]["list"]):
            assert a["datasource"]["uid"] in uids | {"-- Grafana --"}


def test_rules_link_to_their_panels(
    rules: list[dict[str, Any]], dashboards: dict[str, dict[str, Any]]
) -> None:
    for r in nonempty(rules):
        a = r["annotations"]
        panels = {p["id"]: p for p in _panels(dashboards[a["__dashboardUid__"]])}
        panel = panels[int(a["__panelId__"])]
        sli = r["labels"]["sli"].removesuffix("_burn_rate")
        assert sli in panel["targets"][0]["rawSql"], (r["title"], panel["title"])


def test_provisioning_structure(rules: list[dict[str, Any]]) -> None:
    ds_uids = {
        d["uid"] for d in _load_yaml("provisioning/datasources/clickhouse.yaml")["datasources"]
    }
    provider = _load_yaml("provisioning/dashboards/stream-eval.yaml")
    assert provider["apiVersion"] == 1
    (prov,) = provider["providers"]
    assert prov["type"] == "file" and prov["options"]["path"].startswith("/")
    assert {"name", "orgId", "folder"} <= set(prov)

    doc = _load_yaml("provisioning/alerting/rules.yaml")
    assert doc["apiVersion"] == 1
    for g in nonempty(doc["groups"]):
        assert {"orgId", "name", "folder", "interval", "rules"} <= set(g)
        assert re.fullmatch(r"\d+[smh]", g["interval"])
    seen = set()
    for r in nonempty(rules):
        assert {"uid", "title", "condition", "data", "noDataState", "execErrState", "for"} <= set(r)
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", r["uid"]), r["uid"]
        assert r["uid"] not in seen
        seen.add(r["uid"])
        assert re.fullmatch(r"\d+[smh]", r["for"]), r["for"]
        ref_ids = [d["refId"] for d in r["data"]]
        assert r["condition"] in ref_ids and len(set(ref_ids)) == len(ref_ids)
        for d in nonempty(r["data"]):
            assert {"refId", "relativeTimeRange", "datasourceUid", "model"} <= set(d)
            assert d["datasourceUid"] in ds_uids | {"__expr__"}
            assert d["model"]["refId"] == d["refId"]
            if d["datasourceUid"] == "__expr__":
                assert d["model"]["expression"] in ref_ids
        assert {"severity", "team", "sli"} <= set(r["labels"])
        assert r["labels"]["team"] == "llm-platform"
        # the page names what it is about: the slice, or the judge, or the route and check
        named = _ALERT_LABELS.get(r["labels"]["sli"], ("route", "model_version", "prompt_version"))
        for label in nonempty(named):
            assert f"{{{{ $labels.{label} }}}}" in r["annotations"]["summary"]
        # Grafana substitutes $ENV in labels: they must hold no "$".
        assert not any("$" in v for v in r["labels"].values())
    assert any(r["labels"]["severity"] == "page" for r in rules)

    cps = _load_yaml("provisioning/alerting/contact-points.yaml")
    assert cps["apiVersion"] == 1
    (cp,) = cps["contactPoints"]
    (receiver,) = cp["receivers"]
    assert receiver["type"] == "email" and receiver["settings"]["addresses"]
    assert not any("$" in str(v) for v in receiver["settings"].values())
    pol = _load_yaml("provisioning/alerting/policies.yaml")
    assert pol["apiVersion"] == 1
    (root,) = pol["policies"]
    assert root["receiver"] == cp["name"]
    assert root["group_by"] == ["alertname", "route", "prompt_version"]
    assert ["severity", "=", "page"] in [m for r in root["routes"] for m in r["object_matchers"]]
    tmpl = _load_yaml("provisioning/alerting/templates.yaml")
    (t,) = tmpl["templates"]
    body = t["template"]
    assert body.count("{{") == body.count("}}") and "$" not in body
    for name in nonempty(
        re.findall(
            r'template "([^"]+)"', receiver["settings"]["subject"] + receiver["settings"]["message"]
        )
    ):
        assert f'define "{name}"' in body


# -- every query runs -------------------------------------------------------------------------


def test_variable_queries_run(store: Store, dashboards: dict[str, dict[str, Any]]) -> None:
    for d in nonempty(dashboards.values()):
        for v in nonempty(d["templating"]["list"]):
            sql = macros.expand(
                v["query"], time_from=T0, time_to=END, interval_s=60, variables=ALL_VARS
            )
            values = [next(iter(r.values())) for r in _run(store, sql)]
            assert values, v["name"]
    route_sql = dashboards["stream-eval-slis"]["templating"]["list"][0]["query"]
    sql = macros.expand(route_sql, time_from=T0, time_to=END, interval_s=60, variables={})
    assert [r["route"] for r in _run(store, sql)] == [
        "chat",
        "code-assistant",
        "extract-json",
        "support-rag",
    ]


@pytest.mark.parametrize("interval_s", [60, 600])
def test_every_panel_query_runs(
    store: Store, dashboards: dict[str, dict[str, Any]], interval_s: int
) -> None:
    ran = 0
    for d in nonempty(dashboards.values()):
        for p in nonempty(_panels(d)):
            for t in p.get("targets", []):  # may be empty: a row or text panel has no query
                ran += 1
                sql = macros.expand(
                    t["rawSql"],
                    time_from=T0,
                    time_to=END,
                    interval_s=interval_s,
                    variables=ALL_VARS,
                )
                rows = _run(store, sql)
                assert rows, f"{d['uid']}: {p['title']} returned no rows"
                if t["format"] == 0:  # long format: time first, ascending
                    times = [next(iter(r.values())) for r in rows]
                    assert times == sorted(times), p["title"]
    assert ran >= 40, f"only {ran} panel queries ran"


def test_variables_filter_the_panels(store: Store, dashboards: dict[str, dict[str, Any]]) -> None:
    chosen = {"route": ["chat"], "model_version": [ALL], "prompt_version": ["v4", "v3"]}
    checked = 0
    for p in nonempty(_panels(dashboards["stream-eval-slis"])):
        for t in p.get("targets", []):  # may be empty: a row panel (``checked`` counts)
            if "slice" not in t["rawSql"]:
                continue
            sql = macros.expand(
                t["rawSql"], time_from=T0, time_to=END, interval_s=300, variables=chosen
            )
            slices = {r["slice"].split(" · ")[0] for r in _run(store, sql)}  # and its judge
            assert all(s.startswith("chat / ") for s in slices), p["title"]
            assert {s.rsplit(" / ", 1)[1] for s in slices} <= {"v3", "v4"}
            checked += bool(slices)  # grounding and JSON do not apply to chat
    assert checked >= 10


def test_every_alert_query_runs(store: Store, rules: list[dict[str, Any]]) -> None:
    for rule in nonempty(rules):
        rows = _run(store, _rule_sql(rule, END))
        assert rows, rule["title"]
        named = _ALERT_LABELS.get(
            rule["labels"]["sli"], ("route", "model_version", "prompt_version")
        )
        for row in nonempty(rows):
            assert set(row) == {*named, "value"}
            for k in nonempty(named):
                assert isinstance(row[k], str)
            assert isinstance(row["value"], int | float)
            if "rate" in rule["labels"]["sli"] and "burn" not in rule["labels"]["sli"]:
                assert 0 <= row["value"] <= 1, (rule["title"], row)
        _evaluate(rule, rows)  # unique label sets


# -- the incidents ----------------------------------------------------------------------------


def test_refusal_spike_after_prompt_change_fires_for_the_new_prompt_only(
    store: Store, rules: list[dict[str, Any]], settings: Settings
) -> None:
    rule = _rule(rules, "refusal_rate")
    window = timedelta(seconds=rule["data"][0]["relativeTimeRange"]["from"])
    assert window == timedelta(minutes=settings.alerts.window_minutes)

    firing = _firing(store, rule, PROMPT_SWITCH + window)  # evaluated over [T, T+window]
    assert firing == {("chat", mv, "v4") for mv in MODEL_VERSIONS}

    clean = PROMPT_SWITCH - timedelta(minutes=1)  # over [T-window-1m, T-1m]
    assert _firing(store, rule, clean) == set()
    rows = _run(store, _rule_sql(rule, clean))
    assert {(r["route"], r["prompt_version"]) for r in rows} >= {("chat", "v3")}


def test_grounding_burn_rate_fires_on_the_outage_only(
    store: Store, rules: list[dict[str, Any]]
) -> None:
    burn = [r for r in rules if r["labels"]["sli"] == "grounding_burn_rate"]
    assert {r["labels"]["severity"] for r in burn} == {"page", "ticket"}
    for rule in nonempty(burn):
        firing = _firing(store, rule, END)
        assert firing, rule["title"]
        assert {route for route, _, _ in firing} == {"support-rag"}
        before = GROUNDING_OUTAGE - timedelta(minutes=1)
        assert _firing(store, rule, before) == set(), rule["title"]
        assert _run(store, _rule_sql(rule, before)), "the clean period has evaluated slices"


def test_fast_burn_needs_both_windows(store: Store, rules: list[dict[str, Any]]) -> None:
    (fast,) = [r for r in rules if r["uid"] == "stream-eval-grounding-burn-fast"]
    # 10 minutes into the outage the 5-minute window burns, the hour does not yet.
    at = GROUNDING_OUTAGE + timedelta(minutes=10)
    rows = _run(store, _rule_sql(fast, at))
    assert rows and _firing(store, fast, at) == set()


# -- the macro expansion itself ---------------------------------------------------------------


def test_macros_expand_like_the_plugin() -> None:
    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    t1 = t0 + timedelta(hours=1, milliseconds=250)
    s0, s1 = int(t0.timestamp()), int(t1.timestamp())

    def ex(sql: str, **vars: list[str]) -> str:
        return macros.expand(sql, time_from=t0, time_to=t1, interval_s=30, variables=vars)

    assert ex("$__timeFilter(ts)") == f"ts >= toDateTime({s0}) AND ts <= toDateTime({s1})"
    assert ex("$__timeFilter_ms(ts)") == (
        f"ts >= fromUnixTimestamp64Milli({s0 * 1000}) AND "
        f"ts <= fromUnixTimestamp64Milli({s1 * 1000 + 250})"
    )
    assert ex("$__timeInterval(ts)") == "toStartOfInterval(toDateTime(ts), INTERVAL 30 second)"
    assert ex("$__timeInterval_ms(ts)") == (
        "toStartOfInterval(toDateTime64(ts, 3), INTERVAL 30000 millisecond)"
    )
    assert ex("$__interval_s") == "30"
    assert ex("$__fromTime - $__toTime") == f"toDateTime({s0}) - toDateTime({s1})"
    assert ex("$__dateFilter(d)") == "d >= toDate('2026-01-05') AND d <= toDate('2026-01-05')"
    assert ex("x IN (${r:singlequote})", r=["a", "b'c"]) == "x IN ('a','b\\'c')"
    assert ex("x IN ($r)", r=["a", "b"]) == "x IN ('a','b')"
    cond = "$__conditionalAll(route IN (${route:singlequote}), $route)"
    assert ex(cond, route=[ALL]) == "1=1"
    assert ex(cond, route=[]) == "1=1"
    assert ex(cond, route=["chat"]) == "route IN ('chat')"
    assert ex(f"{cond} AND {cond.replace('route', 'pv')}", route=["a"], pv=[ALL]) == (
        "route IN ('a') AND 1=1"
    )
    with pytest.raises(macros.MacroError):
        ex("$__timefilter(ts)")
    with pytest.raises(macros.MacroError):
        ex("$__timeFilter(ts")
    assert (
        macros.expand(
            "x IN (${r:singlequote})",
            time_from=t0,
            time_to=t1,
            interval_s=1,
            variables={"r": [ALL]},
            all_values={"r": ["a", "b"]},
        )
        == "x IN ('a','b')"
    )


def test_the_cli_checks_the_committed_files_of_this_checkout_by_default() -> None:
    """``stream-eval grafana generate --check`` without ``--root``: the checkout's files."""
    from click.testing import CliRunner

    from stream_eval.cli import cli

    result = CliRunner().invoke(cli, ["grafana", "generate", "--check"], obj={})
    assert result.exit_code == 0, result.output
    assert "out of date" not in result.output


def test_both_dashboards_mark_where_the_judge_changed(
    store: Store, dashboards: dict[str, dict[str, Any]]
) -> None:
    # (runs last: it adds a later judge, a month after the seeded traffic, outside the
    # time ranges the tests above read)
    later = T0 + timedelta(days=30)
    rows = [
        {"trace_id": f"later-{i}", "span_id": "", "route": "chat", "rubric": "helpfulness",
         "rubric_version": "2", "judge_model": "judge-next-2", "status": "scored",
         "score": 6.0, "passed": 0, "ts": (later + timedelta(minutes=i)).timestamp(),
         "judged_at": (later + timedelta(minutes=i, seconds=5)).timestamp()}
        for i in range(3)
    ]  # fmt: skip
    store.insert("judge_results", _ndjson(rows))
    for uid in ("stream-eval-slis", "stream-eval-judge"):
        (anno,) = [
            a for a in dashboards[uid]["annotations"]["list"] if a["name"] == "Judge changes"
        ]
        sql = anno["target"]["rawSql"]

        def marks(t0: datetime, t1: datetime, sql: str = sql) -> list[dict[str, Any]]:
            return _run(store, macros.expand(sql, time_from=t0, time_to=t1, interval_s=60,
                                             variables={}))  # fmt: skip

        seeded = marks(T0 - timedelta(hours=1), END)
        assert nonempty(seeded) and all("later" not in r["text"] for r in seeded)
        both = marks(T0 - timedelta(hours=1), later + timedelta(days=1))
        (new,) = [r for r in both if "judge-next-2" in r["text"]]
        assert new["text"] == "judge judge-next-2: helpfulness v2 from here"
        assert str(new["time"]).startswith(
            (later + timedelta(seconds=5)).strftime("%Y-%m-%d %H:%M:%S")
        )
        assert len(both) == len(seeded) + 1
