"""Judge SLIs as estimates: on traffic where the truth is known, the weighted estimate
covers the traffic's true pass rate and the plain mean over the judged sample does not.

The traffic is the product's synthetic mix, decided by the product's own sampler
(failed grounding / PII checks always judged, the rest at the route's rate). The judge's
verdict is a known function of the trace: it passes with probability 0.25 when a check
failed and 0.85 otherwise (drawn from the trace id, independently of the sampler), so
the traffic's true pass rate is the mean over every trace, judged or not.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import orjson
import pytest
from helpers import nonempty

from stream_eval.config import ClickHouseSettings, Settings
from stream_eval.estimates import JUDGE_PASS, JUDGE_SCORE, from_sums, weighted, wilson
from stream_eval.ingest.process import process_batch
from stream_eval.records import Batch, ProcessedTrace, RawMessage
from stream_eval.sampling import unit_hash
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import Store, open_store
from stream_eval.sink.writer import SinkWriter
from stream_eval.synthetic.mix import build_mix
from stream_eval.testing.ingest import write_batch

ROUTE = "support-rag"


def _verdict(p: ProcessedTrace) -> int:
    """The judge's verdict on this trace, known for every trace of the traffic."""
    bad = any(not r.passed for r in p.results)
    return int(unit_hash(p.trace.trace_id, salt="truth") < (0.25 if bad else 0.85))


def _traffic(settings: Settings, seed: int, n: int = 3000) -> Batch:
    mix = build_mix(n, seed=seed, bad=False, batch_size=50)
    now = time.time()
    msgs = [RawMessage("t", 0, i, now, m.value) for i, m in enumerate(mix.messages)]
    return process_batch(msgs, settings)


def _route(batch: Batch) -> list[ProcessedTrace]:
    return [p for p in batch.processed if p.trace.route == ROUTE]


def test_wilson_interval_known_values() -> None:
    lo, hi = wilson(0.5, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.4038, 0.5962)
    lo, hi = wilson(0.0, 10)  # stays inside [0, 1] where a normal interval would not
    assert lo == 0.0 and 0.27 < hi < 0.28


def test_equal_weights_give_the_plain_mean_and_its_size() -> None:
    e = weighted([(1, 0.2), (0, 0.2), (1, 0.2), (1, 0.2)], rate=True)
    assert e.value == pytest.approx(0.75) and e.n_eff == pytest.approx(4)
    s = weighted([(7, 0.5), (9, 0.5)], rate=False)
    assert s.value == pytest.approx(8) and s.lower < 8 < s.upper


def test_the_weighted_estimate_covers_the_truth_and_the_sample_mean_does_not(
    settings: Settings,
) -> None:
    """Over 12 independent traffics: the 95% interval covers the true rate nearly always;
    the plain mean of the judged sample is off by more than the interval, every time."""
    covered = plain_off = 0
    seeds = range(12)
    for seed in nonempty(seeds):
        traffic = _route(_traffic(settings, seed))
        truth = sum(_verdict(p) for p in traffic) / len(traffic)
        judged = [p for p in traffic if p.sample_reason]
        est = weighted(((_verdict(p), p.sample_prob) for p in judged), rate=True)
        plain = sum(_verdict(p) for p in judged) / len(judged)
        covered += est.lower <= truth <= est.upper
        plain_off += abs(plain - truth) > (est.upper - est.lower) / 2
        assert est.n_eff < len(judged)  # the weights cost sample size, and it shows
    assert covered >= 10  # 95% nominal: 12 of 12 expected, 10 leaves room for chance
    assert plain_off == len(seeds)


def _judge_rows(batch: Batch) -> bytes:
    rows = []
    for p in batch.processed:
        if not p.sample_reason:
            continue
        y = _verdict(p)
        t = p.trace
        rows.append(
            {
                "trace_id": t.trace_id, "span_id": t.span_id, "route": t.route,
                "ts": t.start_time, "model_version": t.model_version,
                "prompt_version": t.prompt_version, "rubric": "helpfulness",
                "rubric_version": "1", "judge_model": "stub", "status": "scored",
                "score": 8.0 if y else 3.0, "scale_min": 1, "scale_max": 10, "passed": y,
                "sample_reason": p.sample_reason, "sample_prob": p.sample_prob,
                "judged_at": time.time(),
            }
        )  # fmt: skip
    return ndjson(rows)


def test_the_sql_of_dashboards_and_alerts_equals_the_estimator(
    store: Store, settings: Settings
) -> None:
    """The same traffic through the sink: judge_sli_minute's weighted sums, re-aggregated by the
    SQL the dashboards and alert rules use, give the Python estimate exactly."""
    batch = _traffic(settings, seed=3)
    write_batch(store, batch, settings)
    writer = SinkWriter(store)
    writer.write_tables_sync({"judge_results": _judge_rows(batch)})
    (row,) = store.query(
        f"SELECT {JUDGE_PASS.value} AS v, {JUDGE_PASS.lower} AS lo, {JUDGE_PASS.upper} AS hi, "
        f"{JUDGE_PASS.n_eff} AS n_eff, {JUDGE_SCORE.value} AS m, {JUDGE_SCORE.lower} AS mlo, "
        f"{JUDGE_SCORE.upper} AS mhi, sum(judge_passed) / sum(judge_scored) AS plain "
        f"FROM stream_eval.judge_sli_minute WHERE route = '{ROUTE}'"
    )
    judged = [p for p in _route(batch) if p.sample_reason]
    rate = weighted(((_verdict(p), p.sample_prob) for p in judged), rate=True)
    score = weighted(((8.0 if _verdict(p) else 3.0, p.sample_prob) for p in judged), rate=False)
    assert (row["v"], row["lo"], row["hi"], row["n_eff"]) == pytest.approx(
        (rate.value, rate.lower, rate.upper, rate.n_eff)
    )
    assert (row["m"], row["mlo"], row["mhi"]) == pytest.approx(
        (score.value, score.lower, score.upper)
    )
    traffic = _route(batch)
    truth = sum(_verdict(p) for p in traffic) / len(traffic)
    assert row["lo"] <= truth <= row["hi"]
    assert not row["lo"] <= row["plain"] <= row["hi"]
    # what an analyst re-aggregating by hand from the per-minute sums gets: the same
    sums = store.query(
        "SELECT sum(judge_w) AS sw, sum(judge_w2) AS sw2, sum(judge_w_passed) AS swy, "
        "sum(judge_w2_passed) AS sw2y, count() AS minutes "
        f"FROM stream_eval.judge_sli_minute WHERE route = '{ROUTE}'"
    )[0]
    again = from_sums(sums["sw"], sums["sw2"], sums["swy"], 0, rate=True)
    assert again.value == pytest.approx(rate.value) and sums["minutes"] >= 1
    assert not math.isnan(again.lower)


def test_sample_probability_travels_with_the_judge_request(settings: Settings) -> None:
    from stream_eval.judge.request import decode_judge_request, encode_judge_request

    batch = _traffic(settings, seed=5, n=400)
    probs = set()
    for p in nonempty(batch.processed):
        if p.sample_reason:
            req = decode_judge_request(encode_judge_request(p))
            assert req.sample_prob == p.sample_prob
            probs.add((p.sample_reason.startswith("failed:"), p.sample_prob))
    rate = settings.sample_rate_for(ROUTE)
    assert (True, 1.0) in probs and (False, rate) in probs
    old = orjson.dumps({"v": 1, "trace_id": "t", "route": "r", "output": "o"})
    assert decode_judge_request(old).sample_prob == 1.0  # an older request: weight 1


def test_the_cli_prints_the_estimate_and_its_correction(tmp_path: Path, settings: Settings) -> None:
    """``stream-eval review agreement``: per route, the dashboards' estimate and the same
    minus the judge's mean error on the calibration labels."""
    from click.testing import CliRunner

    from stream_eval.cli import cli
    from stream_eval.review.agreement import Pair, corrected_pass_rate
    from stream_eval.review.labels import Label, record

    store = open_store(ClickHouseSettings(path=str(tmp_path / "chdb")))
    try:
        batch = _traffic(settings, seed=6, n=1000)
        write_batch(store, batch, settings)
        store.insert("judge_results", _judge_rows(batch))
        judged = [p for p in _route(batch) if p.sample_reason == "rate"][:12]
        store.insert("review_queue", ndjson([
            {"trace_id": p.trace.trace_id, "span_id": p.trace.span_id, "route": ROUTE,
             "reason": "calibration", "rubric": "helpfulness", "reviewers_required": 2,
             "ts": p.trace.start_time, "enqueued_at": time.time()}
            for p in judged
        ]))  # fmt: skip
        # people fail every other one, whatever the judge said
        record(store, [
            Label(p.trace.trace_id, p.trace.span_id, "ana", "helpfulness",
                  "pass" if i % 2 else "fail", 8.0 if i % 2 else 3.0)
            for i, p in enumerate(judged)
        ])  # fmt: skip
        (row,) = store.query(
            f"SELECT {JUDGE_PASS.value} AS v, {JUDGE_PASS.lower} AS lo, {JUDGE_PASS.upper} AS hi "
            f"FROM stream_eval.judge_sli_minute WHERE route = '{ROUTE}'"
        )
    finally:
        store.close()
    pairs = [Pair(i % 2, _verdict(p)) for i, p in enumerate(judged)]
    est = weighted(((_verdict(p), p.sample_prob) for p in _route(batch) if p.sample_reason), True)
    assert (row["v"], row["lo"], row["hi"]) == pytest.approx((est.value, est.lower, est.upper))
    c = corrected_pass_rate(est, pairs)
    env = {"STREAM_EVAL_CLICKHOUSE__PATH": str(tmp_path / "chdb"), "COLUMNS": "250"}
    out = CliRunner().invoke(cli, ["review", "agreement"], obj={}, env=env)
    assert out.exit_code == 0, out.output
    line = next(x for x in out.output.splitlines() if x.startswith(f"{ROUTE}:"))
    assert f"judge pass rate {est.value:.1%} [{est.lower:.1%}, {est.upper:.1%}]" in line
    assert f"corrected for the judge's error {c.value:.1%} [{c.lower:.1%}, {c.upper:.1%}]" in line
    assert "(12 calibration labels)" in line
