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

A statistic the labels do not define is an :class:`Undefined` with its reason, never a
made-up number or NaN: kappa (weighted or not) when neither people nor the judge vary
(every pair has the same verdict, or the same score, on each side: there is no
agreement beyond chance to measure; the formula gives 0/0, or a zero-width interval),
weighted kappa with fewer than two scored pairs, the true-positive rate without a label
where people passed, the true-negative rate without one where they failed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from stream_eval.estimates import Z95, Estimate, wilson
from stream_eval.sink.literals import sql_str
from stream_eval.sink.store import Store


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
class Undefined:
    """A statistic the labels do not define, and why (for people: "no variation in labels")."""

    reason: str


NO_VARIATION = "no variation in labels"
NO_SCORE_VARIATION = "no variation in scores"
FEW_SCORES = "fewer than two labels with scores"
NO_HUMAN_PASS = "no labels where people passed"
NO_HUMAN_FAIL = "no labels where people failed"
NO_RESAMPLE_VARIATION = "no variation in any resample"


@dataclass(frozen=True, slots=True)
class Agreement:
    n: int
    agreement: Interval
    kappa: Interval | Undefined
    weighted_kappa: Interval | Undefined
    tpr: Interval | Undefined
    tnr: Interval | Undefined


def _proportion(k: int, n: int) -> Interval:
    p = k / n
    lo, hi = wilson(p, n)
    return Interval(p, lo, hi)


def _rate(k: int, n: int, none: str) -> Interval | Undefined:
    """k of n with its Wilson interval; ``none``: why it is undefined when n is 0."""
    return _proportion(k, n) if n else Undefined(none)


def _varies(values: Sequence[float]) -> bool:
    return len(set(values)) > 1


def cohen_kappa(pairs: Sequence[Pair]) -> tuple[float | None, float, float]:
    """(kappa, p_o, p_e) on the verdicts; kappa None (undefined) when neither people nor
    the judge vary."""
    n = len(pairs)
    p_o = sum(p.human_pass == p.judge_pass for p in pairs) / n
    h = sum(p.human_pass for p in pairs) / n
    j = sum(p.judge_pass for p in pairs) / n
    p_e = h * j + (1 - h) * (1 - j)
    varies = _varies([p.human_pass for p in pairs]) or _varies([p.judge_pass for p in pairs])
    kappa = (p_o - p_e) / (1 - p_e) if varies else None  # varies: p_e < 1
    return kappa, p_o, p_e


def quadratic_kappa(scores: Sequence[tuple[float, float]], lo: int, hi: int) -> float | None:
    """Quadratically weighted kappa of (human, judge) scores on the scale lo..hi; None
    (undefined) when neither side's score varies on the scale."""
    k = hi - lo + 1
    n = len(scores)
    cells = [(min(max(round(a), lo), hi) - lo, min(max(round(b), lo), hi) - lo) for a, b in scores]
    if not (_varies([a for a, _ in cells]) or _varies([b for _, b in cells])):
        return None
    obs = [[0.0] * k for _ in range(k)]
    for a, b in cells:
        obs[a][b] += 1
    rows = [sum(r) for r in obs]
    cols = [sum(obs[i][j] for i in range(k)) for j in range(k)]
    num = den = 0.0
    for i in range(k):
        for j in range(k):
            w = (i - j) ** 2 / (k - 1) ** 2
            num += w * obs[i][j] / n
            den += w * rows[i] * cols[j] / (n * n)
    return 1.0 - num / den  # a side varies: den > 0


def _weighted_kappa(
    scored: Sequence[tuple[float, float]], scale: tuple[int, int], seed: int, boot: int
) -> Interval | Undefined:
    """The value and a seeded percentile bootstrap interval over the resamples that
    define it."""
    if len(scored) < 2:
        return Undefined(FEW_SCORES)
    value = quadratic_kappa(scored, *scale)
    if value is None:
        return Undefined(NO_SCORE_VARIATION)
    rng = random.Random(seed)
    resampled = (quadratic_kappa([rng.choice(scored) for _ in scored], *scale) for _ in range(boot))
    draws = sorted(d for d in resampled if d is not None)
    if not draws:
        return Undefined(NO_RESAMPLE_VARIATION)
    m = len(draws)
    return Interval(value, draws[int(0.025 * m)], draws[max(int(0.975 * m) - 1, 0)])


def agreement(
    pairs: Sequence[Pair], scale: tuple[int, int] = (1, 10), seed: int = 0, boot: int = 500
) -> Agreement:
    n = len(pairs)
    if n == 0:
        raise ValueError("no labelled pairs")
    kappa, p_o, p_e = cohen_kappa(pairs)
    k: Interval | Undefined = Undefined(NO_VARIATION)
    if kappa is not None:
        se = math.sqrt(p_o * (1 - p_o) / (n * (1 - p_e) ** 2))
        k = Interval(kappa, kappa - Z95 * se, kappa + Z95 * se)
    scored = [
        (p.human_score, p.judge_score)
        for p in pairs
        if p.human_score is not None and p.judge_score is not None
    ]
    human_pass = [p for p in pairs if p.human_pass]
    human_fail = [p for p in pairs if not p.human_pass]
    return Agreement(
        n=n,
        agreement=_proportion(sum(p.human_pass == p.judge_pass for p in pairs), n),
        kappa=k,
        weighted_kappa=_weighted_kappa(scored, scale, seed, boot),
        tpr=_rate(sum(p.judge_pass for p in human_pass), len(human_pass), NO_HUMAN_PASS),
        tnr=_rate(sum(not p.judge_pass for p in human_fail), len(human_fail), NO_HUMAN_FAIL),
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
