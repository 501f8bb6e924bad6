"""The SLI registry is the one definition: what it holds is what the view, the window
table, the closer, the dashboards, the alert rules and the CLI have, and a new check is
one registration with no other edit (run in its own process, on a real chdb store)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import nonempty

from stream_eval.config import AlertSettings, Settings
from stream_eval.grafana.alerts import build_alerting
from stream_eval.grafana.dashboards import sli_panel_ids
from stream_eval.sli_registry import (
    COUNTER_NAMES,
    COUNTERS,
    JUDGE_COUNTER_NAMES,
    JUDGE_KEYS,
    JUDGE_LATE_COUNTER_NAMES,
    LATE_COUNTER_NAMES,
    SLIS,
    Counter,
    names_of,
)
from stream_eval.slis import COLUMNS

SCRIPT = Path(__file__).with_name("sli_new_check.py")
SLICE = ["model_version", "prompt_version", "route", "window_start"]
LATENCY = ["latency_p50_ms", "latency_p95_ms"]


def _run(path: Path, variant: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(path), variant],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = orjson.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    path = tmp_path_factory.mktemp("sli-registry") / "chdb"
    return _run(path, "plain"), _run(path, "toxicity")  # the second opens the first's store


def test_the_view_and_the_window_table_have_exactly_the_registry_counters(
    runs: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    plain, _ = runs
    assert sorted(plain["minute_columns"]) == sorted([*SLICE, *LATENCY, *COUNTER_NAMES])
    closing = {"window_kind", "window_end", "closed_at", "refreshed_at"}
    window_extra = closing | {"latency_hist", *LATE_COUNTER_NAMES, "late_feedback"}
    assert set(plain["window_columns"]) == {*SLICE, *LATENCY, *COUNTER_NAMES} | window_extra
    # the judge's, per slice and judge
    judged = {*SLICE, *JUDGE_KEYS, *JUDGE_COUNTER_NAMES}
    assert set(plain["judge_sli_minute_columns"]) == judged
    assert set(plain["judge_sli_windows_columns"]) == judged | closing | {*JUDGE_LATE_COUNTER_NAMES}
    assert not set(COUNTER_NAMES) & set(JUDGE_COUNTER_NAMES)


def test_a_new_check_is_counted_windowed_and_drawn_with_no_other_edit(
    runs: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    plain, tox = runs
    assert "toxicity_fail" not in plain["minute_columns"]
    # the store the plain run created gets the new counters (a migration, not a new store)
    for cols in (tox["minute_columns"], tox["window_columns"]):
        assert {"toxicity_fail", "toxicity_n"} <= set(cols)
    assert tox["minute"] == {"fail": 10, "n": 40, "t": 40}  # every 4th of 40 traces failed
    assert tox["windows"] == {"fail": 10, "n": 40}  # the closed one-minute windows agree
    assert tox["panels"] == 1 and tox["panel_rows"] > 0  # its panel's SQL runs on the store
    assert "toxicity_rate" not in tox["rule_slis"]  # alerts are opted into, per SLI
    assert "toxicity fail %" not in tox["cli_columns"]  # so is the overview


def test_counter_sql() -> None:
    assert Counter("n", "checks").sql() == "count()"
    assert Counter("n", "checks").sql("on_time") == "countIf(on_time)"
    assert Counter("f", "checks", "passed = 0").sql("on_time") == "countIf(on_time AND passed = 0)"
    assert Counter("c", "traces", summed="x").sql() == "sum(x)"
    assert Counter("c", "judge", "s = 1", "x").sql("o") == "sumIf(x, o AND s = 1)"


def test_every_sli_is_a_ratio_of_counters_of_its_grain() -> None:
    assert len({c.name for c in COUNTERS}) == len(COUNTERS)  # no counter defined twice
    for s in nonempty(SLIS.values()):
        used = set(re.findall(r"sum\((\w+)\)", f"{s.numerator} {s.denominator}"))
        assert used and used <= set(names_of(s.grain)), s.key
        rest = re.sub(r"sum\(\w+\)", "", f"{s.numerator} {s.denominator}")
        assert set(rest) <= set(" -+"), (s.key, rest)  # nothing but sums of counters


def test_alerts_panels_and_cli_follow_the_registry() -> None:
    settings = Settings()
    alerting = {k for k, s in SLIS.items() if s.alert is not None}
    rules = build_alerting(settings)["rules.yaml"]["groups"]
    labels = {r["labels"]["sli"] for g in rules for r in g["rules"]}
    assert alerting <= labels
    # every rate threshold in AlertSettings belongs to exactly one SLI, and exists
    fields = {f for f in AlertSettings.model_fields if re.fullmatch(r"\w+_rate_(max|min)", f)}
    settings_used = [s.alert.setting for s in SLIS.values() if s.alert is not None]
    assert sorted(settings_used) == sorted(fields)
    assert set(SLIS) <= set(sli_panel_ids(settings))  # every SLI has its panel
    summary = [s for s in SLIS.values() if s.summary]
    headers = {c[0] for c in COLUMNS}
    assert {s.short + (" %" if s.unit == "percentunit" else "") for s in summary} <= headers
