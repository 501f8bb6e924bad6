"""How far the judge agrees with people, and the judge's pass rate corrected for its error.

From the labels (each carries the judge result on the same trace and rubric), per judge
model and rubric version:

- agreement rate on the verdict (pass / fail), with its Wilson interval;
- Cohen's kappa on the verdict (agreement beyond chance), with the large-sample
  interval ``κ ± z·sqrt(p_o(1 − p_o) / (n (1 − p_e)²))``;
- quadratically weighted kappa on the score (the rubric's integer scale; a near miss
  counts as partial agreement), with a seeded bootstrap interval;
- true-positive rate (the judge passes what people pass) and true-negative rate (the
  judge fails what people fail), with Wilson intervals.

The corrected pass rate is prediction-powered inference (Angelopoulos et al., 2023): the
judge's estimated pass rate over the traffic (``estimates``) minus the judge's mean error
on the random calibration sample (judge verdict − human verdict, labels of reason
``calibration``), with both variances in its interval. So a drifting judge shows as a
moving correction, not as a moving product. The calibration sample is drawn from the
traces judged at their route's rate, so the correction is that stratum's error,
applied to all.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from stream_eval.estimates import Z95, Estimate, wilson
from stream_eval.sink.store import Store, sql_str


@dataclass(frozen=True, slots=True)
class Pair:
    human_pass: int
    judge_pass: int
    human_score: float | None = None
    judge_score: float | None = None


@dataclass(frozen=True, slots=True)
class Interval:
    value: float
    lower: float
    upper: float


@dataclass(frozen=True, slots=True)
class Agreement:
    n: int
    agreement: Interval
    kappa: Interval
    weighted_kappa: Interval | None  # None: fewer than two scored pairs
    tpr: Interval
    tnr: Interval


def _rate(k: int, n: int) -> Interval:
    p = k / n if n else math.nan
    lo, hi = wilson(p, n) if n else (math.nan, math.nan)
    return Interval(p, lo, hi)


def cohen_kappa(pairs: Sequence[Pair]) -> tuple[float, float, float]:
    """(kappa, p_o, p_e) on the verdicts."""
    n = len(pairs)
    p_o = sum(p.human_pass == p.judge_pass for p in pairs) / n
    h = sum(p.human_pass for p in pairs) / n
    j = sum(p.judge_pass for p in pairs) / n
    p_e = h * j + (1 - h) * (1 - j)
    kappa = (p_o - p_e) / (1 - p_e) if p_e < 1 else 1.0
    return kappa, p_o, p_e


def quadratic_kappa(scores: Sequence[tuple[float, float]], lo: int, hi: int) -> float:
    """Quadratically weighted kappa of (human, judge) scores on the scale lo..hi."""
    k = hi - lo + 1
    n = len(scores)
    obs = [[0.0] * k for _ in range(k)]
    for a, b in scores:
        obs[min(max(round(a), lo), hi) - lo][min(max(round(b), lo), hi) - lo] += 1
    rows = [sum(r) for r in obs]
    cols = [sum(obs[i][j] for i in range(k)) for j in range(k)]
    num = den = 0.0
    for i in range(k):
        for j in range(k):
            w = (i - j) ** 2 / (k - 1) ** 2
            num += w * obs[i][j] / n
            den += w * rows[i] * cols[j] / (n * n)
    return 1.0 - num / den if den > 0 else 1.0


def agreement(
    pairs: Sequence[Pair], scale: tuple[int, int] = (1, 10), seed: int = 0, boot: int = 500
) -> Agreement:
    n = len(pairs)
    if n == 0:
        raise ValueError("no labelled pairs")
    kappa, p_o, p_e = cohen_kappa(pairs)
    se = math.sqrt(p_o * (1 - p_o) / (n * (1 - p_e) ** 2)) if p_e < 1 else 0.0
    scored = [
        (p.human_score, p.judge_score)
        for p in pairs
        if p.human_score is not None and p.judge_score is not None
    ]
    qwk: Interval | None = None
    if len(scored) >= 2:
        value = quadratic_kappa(scored, *scale)
        rng = random.Random(seed)
        draws = sorted(
            quadratic_kappa([rng.choice(scored) for _ in scored], *scale) for _ in range(boot)
        )
        qwk = Interval(value, draws[int(0.025 * boot)], draws[int(0.975 * boot) - 1])
    human_pass = [p for p in pairs if p.human_pass]
    human_fail = [p for p in pairs if not p.human_pass]
    return Agreement(
        n=n,
        agreement=_rate(sum(p.human_pass == p.judge_pass for p in pairs), n),
        kappa=Interval(kappa, kappa - Z95 * se, kappa + Z95 * se),
        weighted_kappa=qwk,
        tpr=_rate(sum(p.judge_pass for p in human_pass), len(human_pass)),
        tnr=_rate(sum(not p.judge_pass for p in human_fail), len(human_fail)),
    )


def corrected_pass_rate(judge: Estimate, calibration: Sequence[Pair]) -> Interval:
    """The judge's estimated pass rate minus its mean error on the calibration sample."""
    n = len(calibration)
    if n < 2:
        raise ValueError("the correction needs at least two calibration labels")
    errors = [p.judge_pass - p.human_pass for p in calibration]
    delta = sum(errors) / n
    var_delta = sum((e - delta) ** 2 for e in errors) / (n - 1) / n
    se_judge = (judge.upper - judge.lower) / (2 * Z95)  # from its interval
    half = Z95 * math.sqrt(se_judge**2 + var_delta)
    value = judge.value - delta
    return Interval(value, value - half, value + half)


def labelled_pairs(
    store: Store, since_days: float = 30, reason: str = ""
) -> dict[tuple[str, str, str], list[Pair]]:
    """(judge model, rubric, rubric version) -> pairs: the newest label of each reviewer on
    each judged (trace, call, rubric), as ``judge_agreement_daily`` counts them; ``reason``:
    only items queued for it (``calibration``: the random sample)."""
    since = f"now() - INTERVAL {int(since_days * 86400)} SECOND"
    only = f"AND reason = {sql_str(reason)}" if reason else ""
    rows = store.query(
        f"""
SELECT judge_model, rubric, rubric_version, verdict = 'pass' AS human_pass,
       assumeNotNull(judge_passed) AS judge_pass, score, judge_score
FROM
(
    SELECT * FROM {store.database}.review_labels FINAL
    WHERE judge_passed IS NOT NULL AND labelled_at > {since} {only}
    ORDER BY labelled_at DESC
    LIMIT 1 BY trace_id, span_id, rubric, reviewer
)
ORDER BY judge_model, rubric, rubric_version"""
    )
    out: dict[tuple[str, str, str], list[Pair]] = {}
    for r in rows:
        key = (r["judge_model"], r["rubric"], r["rubric_version"])
        out.setdefault(key, []).append(
            Pair(int(r["human_pass"]), int(r["judge_pass"]), r["score"], r["judge_score"])
        )
    return out
