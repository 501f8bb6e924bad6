"""Judge SLIs as estimates of the traffic: inverse-probability weighting of the sample.

The judge sees a sample, and not a uniform one: a trace that failed an
``always_on_failed`` check is judged with probability 1, any other at its route's rate.
A plain mean over the judged set over-weights the failed traces (on the demo's
``support-rag`` about 31% of the judged set against 8.5% of the traffic) and moves when
the check-failure rate moves. Each judged trace carries its inclusion probability
``p`` (``sample_prob``, recorded when it was sampled); its weight is ``w = 1 / p``.

For a slice and time range, over the scored (trace, rubric) results ``i``:

- estimate (Hájek): ``m = Σ wᵢ yᵢ / Σ wᵢ`` (``y``: the score, or 1/0 for passed);
- effective sample size (Kish): ``n_eff = (Σ wᵢ)² / Σ wᵢ²``;
- mean: normal interval ``m ± z·se``, ``se² = Σ wᵢ² (yᵢ − m)² / (Σ wᵢ)²`` (the
  linearised variance of a ratio estimator), computed from the sums
  ``Σ w²y²``, ``Σ w²y`` and ``Σ w²``;
- rate: the Wilson score interval at ``n_eff`` (it stays inside [0, 1] and behaves
  with few traces or rates near 0 or 1).

Caveats, for analysts: results the judge could not produce (``failed``, budget
``skipped``) are left out, which is unbiased only if they are missing at random;
sampling rates changed mid-window are fine, since each result carries its own ``p``.

``sli_minute`` and ``sli_windows`` carry the sums (``judge_w``, ``judge_w2``,
``judge_w_score``, ``judge_w2_score``, ``judge_w2_score2``, ``judge_w_passed``,
``judge_w2_passed``; for whole units ``session_judge_w``, ``session_judge_w2``,
``session_judge_w_passed`` and the same for ``run_judge_``), so any window or slice
re-aggregates exactly. The SQL here and the
Python below are the one definition the dashboards, alert rules, CLI and tests use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

Z95 = 1.959963984540054


# --- Python ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Estimate:
    value: float
    lower: float
    upper: float
    n_eff: float
    n: int  # judged results it stands on


def wilson(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``p`` observed on ``n`` (may be an
    effective, non-integer size)."""
    if n <= 0:
        return 0.0, 1.0
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def weighted(values: Iterable[tuple[float, float]], rate: bool, z: float = Z95) -> Estimate:
    """``(y, p)`` pairs (the value and its inclusion probability) -> the estimate."""
    sw = sw2 = swy = sw2y = sw2y2 = 0.0
    n = 0
    for y, p in values:
        w = 1.0 / p
        sw += w
        sw2 += w * w
        swy += w * y
        sw2y += w * w * y
        sw2y2 += w * w * y * y
        n += 1
    return from_sums(sw, sw2, swy, n, rate=rate, sw2y=sw2y, sw2y2=sw2y2, z=z)


def from_sums(
    sw: float, sw2: float, swy: float, n: int, *, rate: bool, sw2y: float = 0.0,
    sw2y2: float = 0.0, z: float = Z95,
) -> Estimate:  # fmt: skip
    """The estimate from the weighted sums (a rate needs only the first three)."""
    if sw <= 0:
        return Estimate(math.nan, math.nan, math.nan, 0.0, n)
    m = swy / sw
    n_eff = sw * sw / sw2
    if rate:
        lo, hi = wilson(m, n_eff, z)
    else:
        var = max(sw2y2 - 2 * m * sw2y + m * m * sw2, 0.0) / (sw * sw)
        half = z * math.sqrt(var)
        lo, hi = m - half, m + half
    return Estimate(m, lo, hi, n_eff, n)


# --- SQL over sli_minute / sli_windows sums -------------------------------------------

Z = f"{Z95:.6f}"


@dataclass(frozen=True, slots=True)
class EstimateSql:
    """SQL expressions (aggregates over rows of ``sli_minute``) for one judge estimate."""

    key: str
    rate: bool  # passed (Wilson) or score (normal)
    prefix: str = "judge"  # the sums' prefix: judge_ (calls), session_judge_, run_judge_

    @property
    def _y(self) -> str:
        return "passed" if self.rate else "score"

    @property
    def value(self) -> str:
        p = self.prefix
        return f"sum({p}_w_{self._y}) / nullIf(sum({p}_w), 0)"

    @property
    def n_eff(self) -> str:
        p = self.prefix
        return f"pow(sum({p}_w), 2) / nullIf(sum({p}_w2), 0)"

    @property
    def lower(self) -> str:
        return self._bound("-")

    @property
    def upper(self) -> str:
        return self._bound("+")

    def _bound(self, sign: str) -> str:
        m, n = f"({self.value})", f"({self.n_eff})"
        if self.rate:  # Wilson at the effective sample size
            return (
                f"(({m} + {Z}*{Z}/(2*{n})) {sign} {Z}*sqrt({m}*(1-{m})/{n} + "
                f"{Z}*{Z}/(4*{n}*{n}))) / (1 + {Z}*{Z}/{n})"
            )
        var = (
            f"greatest(sum(judge_w2_score2) - 2*{m}*sum(judge_w2_score) + "
            f"{m}*{m}*sum(judge_w2), 0) / pow(sum(judge_w), 2)"
        )
        return f"{m} {sign} {Z}*sqrt({var})"


JUDGE_PASS = EstimateSql("judge_pass_rate", rate=True)
JUDGE_SCORE = EstimateSql("judge_mean_score", rate=False)
# whole units (sessions, agent runs), judged on their own rubrics and sampled on their own
SESSION_JUDGE_PASS = EstimateSql("session_judge_pass_rate", rate=True, prefix="session_judge")
RUN_JUDGE_PASS = EstimateSql("run_judge_pass_rate", rate=True, prefix="run_judge")


# --- the weighted sums (counters of sli_minute and sli_windows, stream_eval.sli_registry) ---

# ``{w}``: the weight 1/p, ``{s}``: the score, ``{p}``: passed (1/0), over scored results.
WEIGHTED_TERMS: dict[str, str] = {
    "judge_w": "{w}",
    "judge_w2": "{w} * {w}",
    "judge_w_score": "{w} * {s}",
    "judge_w2_score": "{w} * {w} * {s}",
    "judge_w2_score2": "{w} * {w} * {s} * {s}",
    "judge_w_passed": "{w} * {p}",
    "judge_w2_passed": "{w} * {w} * {p}",
}
# A unit's pass rate needs only three: Σw, Σw² (the effective size) and Σw·passed.
UNIT_WEIGHTED_TERMS: dict[str, str] = {"w": "{w}", "w2": "{w} * {w}", "w_passed": "{w} * {p}"}
