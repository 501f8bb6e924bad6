"""Every table command off a terminal (click's CliRunner: its output is no tty), at rich's
80 columns: whole headers and values, never "…"; and ``--format csv|json`` that parse back
to the same figures."""

from __future__ import annotations

import csv
import io
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from helpers import nonempty

from stream_eval.cli import cli
from stream_eval.config import Settings
from stream_eval.records import RawMessage
from stream_eval.review.agreement import NO_HUMAN_FAIL, NO_VARIATION
from stream_eval.review.labels import Label, record
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import open_store
from stream_eval.slis import COLUMNS, current_slis
from stream_eval.synthetic.mix import Expected, build_mix
from stream_eval.tables import Column, Shown, Table, to_csv, to_json
from stream_eval.testing.ingest import write_messages

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "deploy" / "demo.toml"
ELLIPSIS = "…"


@pytest.fixture(autouse=True)
def narrow_pipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The demo settings on a store of the test's own, no judge, and the 80 columns rich
    assumes off a terminal (set, so that a terminal the tests run from does not widen it)."""
    for key in list(os.environ):
        if key.startswith("STREAM_EVAL_"):
            monkeypatch.delenv(key)
    for key in ("OPENAI_API_KEY", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("STREAM_EVAL_CONFIG", str(DEMO))
    monkeypatch.setenv("STREAM_EVAL_CLICKHOUSE__PATH", str(tmp_path / "chdb"))
    monkeypatch.setenv("COLUMNS", "80")
    yield


def invoke(*args: str) -> Result:
    r = CliRunner().invoke(cli, list(args), obj={})
    assert r.exit_code == 0, r.output
    return r


def _traffic() -> Expected:
    mix = build_mix(300, batch_size=20, seed=3)
    now = time.time()
    msgs = [RawMessage("t", 0, i, now, m.value) for i, m in enumerate(mix.messages)]
    settings = Settings()
    store = open_store(settings.clickhouse)
    try:
        write_messages(store, msgs, settings)
    finally:
        store.close()  # one chdb session per process: the CLI opens its own
    return mix.expected


def _csv_sections(text: str) -> list[list[list[str]]]:
    """Rows of each table, split at the blank line between tables."""
    sections: list[list[list[str]]] = [[]]
    for row in csv.reader(io.StringIO(text)):
        if row:
            sections[-1].append(row)
        else:
            sections.append([])
    return sections


def _header_line(output: str, *names: str) -> str:
    return next(line for line in output.splitlines() if all(n in line for n in names))


def _number(cell: str) -> float | None:
    return None if cell == "" else float(cell)


# --------------------------------------------------------------------------- the helper


def test_the_helper_renders_one_table_three_ways() -> None:
    t = Table("t", [Column("name"), Column("count", "{:,}", right=True), Column("rate")])
    t.add('a, "quoted"\nname', 1234567, Shown("0.50 [0.1, 0.9]", {"value": 0.5}))
    t.add("nan", float("nan"), None)
    rows = list(csv.reader(io.StringIO(to_csv([t]))))
    assert rows == [
        ["name", "count", "rate"],
        ['a, "quoted"\nname', "1234567", "0.50 [0.1, 0.9]"],
        ["nan", "", ""],  # a NaN is no value: never printed as nan
    ]
    assert orjson.loads(to_json([t])) == [
        {"name": 'a, "quoted"\nname', "count": 1234567, "rate": {"value": 0.5}},
        {"name": "nan", "count": None, "rate": None},
    ]
    two = orjson.loads(to_json([t, Table("u", [Column("x")], [("y",)])]))
    assert list(two) == ["t", "u"] and two["u"] == [{"x": "y"}]
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        t.add("short", 1)


def test_the_table_format_takes_values_as_text_not_markup(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from stream_eval.tables import print_tables

    print_tables([Table("t", [Column("route")], [("[bold]support[/bold]" + "-x" * 60,)])])
    out = capsys.readouterr().out
    assert "[bold]support[/bold]" + "-x" * 60 in out and ELLIPSIS not in out


# --------------------------------------------------------------------------- slis


@pytest.mark.parametrize("by_slice", [True, False], ids=["by slice", "by route"])
def test_slis_print_whole_in_every_format(by_slice: bool) -> None:
    _traffic()
    store = open_store(Settings().clickhouse)
    try:
        _, rows = current_slis(store, 60, by_slice)
    finally:
        store.close()
    assert rows
    keys = ["route", "model_version", "prompt_version"] if by_slice else ["route"]
    headers = keys + [name for name, _, _ in COLUMNS] + ["judge"]  # the current judge
    args = ["slis", "--by-slice"] if by_slice else ["slis"]

    table = invoke(*args).output
    assert ELLIPSIS not in table
    header = _header_line(table, "route", "calls")
    for h in nonempty(headers):
        assert h in header
    for r in nonempty(rows):
        traces = f"{int(r['c0']):,}"
        assert any(all(str(r[k]) in line for k in keys) and traces in line
                   for line in table.splitlines()), (r, table)  # fmt: skip

    (got,) = _csv_sections(invoke(*args, "--format", "csv").stdout)
    assert got[0] == headers
    assert len(got) - 1 == len(rows)
    as_json = orjson.loads(invoke(*args, "--format", "json").stdout)
    assert [list(o) for o in as_json] == [headers] * len(rows)
    for r, line, obj in nonempty(zip(rows, got[1:], as_json, strict=True)):
        assert line[: len(keys)] == [str(r[k]) for k in keys] == [obj[k] for k in keys]
        assert int(line[len(keys)]) == int(r["c0"]) == obj["calls"]
        for i, (name, _, _) in nonempty(enumerate(COLUMNS)):
            v = r[f"c{i}"]
            want = None if v is None or float(v) != float(v) else float(v)
            assert _number(line[len(keys) + i]) == want == obj[name], name


# --------------------------------------------------------------------------- summary


def test_summary_prints_whole_in_every_format() -> None:
    from stream_eval.checks import CHECKS

    expected = _traffic()
    table = invoke("summary").output
    assert ELLIPSIS not in table
    header = _header_line(table, "route", "dead letters")
    for h in ("calls", "sampled", "sampled %", *CHECKS):
        assert h in header
    for route, n in nonempty(expected.traces.items()):
        assert any(route in line and f"{n:,}" in line for line in table.splitlines())
    assert f"Kafka messages accounted for: {expected.messages:,}" in table
    assert "Judging is disabled" in table

    r = invoke("summary", "--format", "csv")
    routes, judge, totals = _csv_sections(r.stdout)
    assert routes[0] == ["route", "calls", "sampled", "sampled %", "dead letters", *CHECKS]
    assert {line[0]: int(line[1]) for line in routes[1:]} == expected.traces
    assert judge == [["route", "rubric", "scored", "failed", "skipped (budget)", "mean score",
                      "pass %", "cost USD"]]  # fmt: skip
    assert "Judging is disabled" in r.stderr and "Judging" not in r.stdout
    assert int(totals[1][0]) == expected.messages

    doc = orjson.loads(invoke("summary", "--format", "json").stdout)
    assert list(doc) == ["routes", "judge", "totals"]
    assert {o["route"]: o["calls"] for o in doc["routes"]} == expected.traces
    assert doc["judge"] == []
    (t,) = doc["totals"]
    assert t["Kafka messages"] == expected.messages
    assert t["dead letters by reason"] == dict(expected.dead)
    for o in nonempty(
        doc["routes"]
    ):  # a check not applicable on a route: null, as "-" in the table
        assert all(o[c] is None or isinstance(o[c], int) for c in CHECKS)


# --------------------------------------------------------------------------- lag


def test_lag_prints_whole_in_every_format(monkeypatch: pytest.MonkeyPatch) -> None:
    import stream_eval.runtime.lag

    lags = {"stream-eval-demo.traces": 1_234_567, "stream-eval-demo.judge-requests": 0}

    def fake_lag(settings: Any, topic: str, group: str | None = None) -> int:
        return lags.get(topic, 0) + (7 if group and group.endswith("-judge") else 0)

    monkeypatch.setattr(stream_eval.runtime.lag, "group_lag", fake_lag)
    s = Settings()
    t = s.topics
    rows = [
        (s.app_id, t.traces),
        (s.app_id, t.feedback),
        (s.app_id, t.otlp_spans),
        (s.app_id, t.otlp_logs),
        (s.app_id, t.otlp_assembly),
        (s.app_id, t.judge_requests),
        (f"{s.app_id}-judge", t.judge_requests),
    ]
    want = [[g, tp, fake_lag(s, tp, g)] for g, tp in rows]
    table = invoke("lag").output
    assert ELLIPSIS not in table
    for group, topic, n in nonempty(want):
        assert any(group in line and topic in line and f"{n:,}" in line
                   for line in table.splitlines())  # fmt: skip
    (got,) = _csv_sections(invoke("lag", "--format", "csv").stdout)
    assert got == [["consumer group", "topic", "lag"]] + [[g, tp, str(n)] for g, tp, n in want]
    as_json = orjson.loads(invoke("lag", "--format", "json").stdout)
    assert as_json == [{"consumer group": g, "topic": tp, "lag": n} for g, tp, n in want]


# --------------------------------------------------------------------------- agreement

JUDGE = "judge-model-with-a-long-name-2026-01-15"


def _labels_all_passed() -> None:
    """People and the judge pass all four: kappa undefined, no fail labels for the TNR."""
    store = open_store(Settings().clickhouse)
    try:
        scores = [(8.0, 8.0), (9.0, 8.0), (7.0, 8.0), (8.0, 9.0)]
        store.insert("judge_results", ndjson([
            {"trace_id": f"t{i}", "span_id": "s", "route": "support-rag", "rubric": "helpfulness",
             "judge_model": JUDGE, "status": "scored", "score": judge, "passed": 1,
             "ts": time.time(), "judged_at": time.time()}
            for i, (_, judge) in enumerate(scores)
        ]))  # fmt: skip
        record(store, [Label(f"t{i}", "s", "ana", "helpfulness", "pass", human)
                       for i, (human, _) in enumerate(scores)])  # fmt: skip
    finally:
        store.close()


def test_agreement_prints_undefined_kappa_whole_in_every_format() -> None:
    _labels_all_passed()
    headers = ["judge model", "rubric", "version", "labels", "agreement", "kappa",
               "weighted kappa", "TPR", "TNR"]  # fmt: skip

    table = invoke("review", "agreement").output
    assert ELLIPSIS not in table
    header = _header_line(table, "judge model", "TNR")
    for h in nonempty(headers):
        assert h in header
    assert JUDGE in table
    assert f"undefined ({NO_VARIATION})" in table
    assert f"undefined ({NO_HUMAN_FAIL})" in table
    assert "1.00 [1.00, 1.00]" not in table
    assert not re.search(r"\bnan\b", table, re.IGNORECASE)

    agreement, corrected = _csv_sections(invoke("review", "agreement", "--format", "csv").stdout)
    assert agreement[0] == headers
    (row,) = (dict(zip(headers, line, strict=True)) for line in agreement[1:])
    assert (row["judge model"], row["labels"]) == (JUDGE, "4")
    assert row["agreement"].startswith("1.00 [")
    assert row["kappa"] == "undefined (no variation in labels)"
    assert row["TNR"] == "undefined (no labels where people failed)"
    assert re.fullmatch(r"-?\d\.\d\d \[-?\d\.\d\d, -?\d\.\d\d\]", row["weighted kappa"])
    assert corrected[0] == [
        "route", "judge pass rate", "corrected pass rate", "calibration labels", "judge"
    ]  # fmt: skip
    (rate,) = corrected[1:]  # the route's current judge, none of its labels a calibration one
    assert rate[0] == "support-rag" and rate[3:] == ["0", JUDGE]
    assert rate[2] == "undefined (needs at least two calibration labels)"

    doc = orjson.loads(invoke("review", "agreement", "--format", "json").stdout)
    assert list(doc) == ["agreement", "corrected"]
    assert [(c["route"], c["judge"]) for c in doc["corrected"]] == [("support-rag", JUDGE)]
    (obj,) = doc["agreement"]
    assert list(obj) == headers and obj["labels"] == 4
    undefined = {"value": None, "lower": None, "upper": None}
    assert obj["kappa"] == {**undefined, "undefined": NO_VARIATION}
    assert obj["TNR"] == {**undefined, "undefined": NO_HUMAN_FAIL}
    assert obj["agreement"]["value"] == 1.0 and obj["TPR"]["value"] == 1.0
    assert isinstance(obj["weighted kappa"]["value"], float)


def test_agreement_without_labels_says_so_and_machine_formats_stay_parseable() -> None:
    assert "no labels compared with a judge result yet" in invoke("review", "agreement").output
    r = invoke("review", "agreement", "--format", "json")
    assert orjson.loads(r.stdout) == {"agreement": [], "corrected": []}
    assert "no labels compared with a judge result yet" in r.stderr
