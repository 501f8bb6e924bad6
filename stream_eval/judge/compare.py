"""Two judges on the same traffic: how each agrees with people, how far apart they are on
the same items, and the SLI each would give (``stream-eval judge compare``).

A judge is a judge model, optionally with a rubric version (``model`` or
``model@version``); its results are the ``judge_results`` rows it wrote (the keys carry
both), or, as ``shadow:model[@version]``, the rows a shadow judge wrote by replay
(``shadow_judge_results``, ``judge.shadow``). Over a range of event time, per route and overall:

- **agreement with people**, each judge on the labelled items it scored (the newest label
  of each reviewer per item and rubric): ``review.agreement``'s agreement rate, kappa,
  weighted kappa, TPR and TNR, with intervals;
- **the paired shift** on the items both scored: the mean score difference (B − A) with a
  normal interval, and McNemar's exact test on the pass/fail flips;
- **the SLI each would give**: its pass rate over the items it scored, weighted by each
  item's inverse inclusion probability (``estimates``), with its interval;
- **the items they disagree on most** (the largest score differences), which
  ``queue_disagreements`` puts in the review queue on request (reason ``judge_disagreement``).

The gate (``--max-agreement-drop``, ``--max-shift``) compares B against A: B's kappa (its
agreement rate where kappa is undefined) may fall at most that far below A's, and the
absolute mean shift may be at most that many score points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from stream_eval.estimates import Z95, Estimate, weighted
from stream_eval.review.agreement import Agreement, Interval, Pair, Undefined, agreement
from stream_eval.sink.base import Store
from stream_eval.sink.literals import sql_str
from stream_eval.sink.rows import ndjson
from stream_eval.sink.twins import TWINS

SHADOW = "shadow:"


@dataclass(frozen=True, slots=True)
class Judge:
    model: str
    rubric_version: str = ""  # "": any version
    shadow: bool = False  # its results are a shadow run's (``shadow_judge_results``)

    @classmethod
    def parse(cls, text: str) -> Judge:
        shadow = text.startswith(SHADOW)
        model, _, version = text.removeprefix(SHADOW).partition("@")
        if not model:
            raise ValueError(
                f"a judge is [shadow:]MODEL or [shadow:]MODEL@RUBRIC_VERSION, not {text!r}"
            )
        return cls(model, version, shadow)

    @property
    def table(self) -> str:
        return TWINS["judge_results"] if self.shadow else "judge_results"

    def where(self) -> str:
        cond = f"judge_model = {sql_str(self.model)}"
        if self.rubric_version:
            cond += f" AND rubric_version = {sql_str(self.rubric_version)}"
        return cond

    def __str__(self) -> str:
        name = f"{self.model}@{self.rubric_version}" if self.rubric_version else self.model
        return SHADOW + name if self.shadow else name


@dataclass(frozen=True, slots=True)
class Shift:
    n: int  # items both scored
    mean: Interval | Undefined  # B - A, score points
    a_only_pass: int  # A passed, B failed
    b_only_pass: int  # B passed, A failed
    mcnemar_p: float | None  # exact two-sided; None without any flip


@dataclass(slots=True)
class Slice:
    route: str  # "" : every route
    agreement: dict[str, Agreement | Undefined] = field(default_factory=dict)  # per judge
    sli: dict[str, Estimate | None] = field(default_factory=dict)  # pass rate per judge
    shift: Shift | None = None


def mcnemar_exact(b: int, c: int) -> float | None:
    """Two-sided exact p-value of McNemar's test: the flips ``b`` and ``c`` as a fair coin."""
    n = b + c
    if n == 0:
        return None
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / float(1 << n)
    return min(1.0, 2 * tail)


def shift_of(pairs: list[tuple[float, float, int, int]]) -> Shift:
    """``(score A, score B, passed A, passed B)`` on the same items."""
    n = len(pairs)
    diffs = [b - a for a, b, _, _ in pairs]
    mean: Interval | Undefined = Undefined("no item scored by both judges")
    if n >= 2:
        m = sum(diffs) / n
        sd = math.sqrt(sum((d - m) ** 2 for d in diffs) / (n - 1))
        half = Z95 * sd / math.sqrt(n)
        mean = Interval(m, m - half, m + half)
    elif n == 1:
        mean = Undefined("one item scored by both judges: no interval")
    a_only = sum(1 for _, _, pa, pb in pairs if pa and not pb)
    b_only = sum(1 for _, _, pa, pb in pairs if pb and not pa)
    return Shift(n, mean, a_only, b_only, mcnemar_exact(a_only, b_only))


def _results(
    store: Store, judge: Judge, rubric: str, since: float, until: float
) -> list[dict[str, Any]]:
    return store.query(
        f"SELECT trace_id, span_id, route, toFloat64(ts) AS ts, score, "
        f"assumeNotNull(passed) AS passed, sample_prob, "
        f"scale_min, scale_max FROM {store.database}.{judge.table} FINAL "
        f"WHERE {judge.where()} AND rubric = {sql_str(rubric)} AND status = 'scored' "
        f"AND passed IS NOT NULL AND ts >= fromUnixTimestamp64Milli({round(since * 1000)}) "
        f"AND ts < fromUnixTimestamp64Milli({round(until * 1000)})"
    )


def _labels(store: Store, rubric: str) -> dict[tuple[str, str], list[tuple[int, float | None]]]:
    rows = store.query(
        f"SELECT trace_id, span_id, verdict = 'pass' AS human_pass, score "
        f"FROM (SELECT * FROM {store.database}.review_labels FINAL "
        f"WHERE rubric = {sql_str(rubric)} ORDER BY labelled_at DESC "
        f"LIMIT 1 BY trace_id, span_id, rubric, reviewer)"
    )
    out: dict[tuple[str, str], list[tuple[int, float | None]]] = {}
    for r in rows:
        out.setdefault((r["trace_id"], r["span_id"]), []).append((int(r["human_pass"]), r["score"]))
    return out


@dataclass(slots=True)
class Comparison:
    a: Judge
    b: Judge
    rubric: str
    slices: list[Slice]
    disagreements: list[dict[str, Any]]

    def gate(self, max_agreement_drop: float | None, max_shift: float | None) -> list[str]:
        """Why B fails the gate against A (overall): empty when it passes."""
        overall = self.slices[0]
        failed = []
        if max_agreement_drop is not None:
            ka, kb = (_agreement_value(overall.agreement.get(str(j))) for j in (self.a, self.b))
            if ka is None or kb is None:
                failed.append("agreement: not enough labelled items scored by both judges")
            elif kb < ka - max_agreement_drop:
                failed.append(f"agreement fell {ka - kb:.3f} (from {ka:.3f} to {kb:.3f}), "
                              f"more than {max_agreement_drop}")  # fmt: skip
        if max_shift is not None:
            shift = overall.shift
            if shift is None or isinstance(shift.mean, Undefined):
                failed.append("shift: no items scored by both judges")
            elif abs(shift.mean.value) > max_shift:
                failed.append(f"mean score shift {shift.mean.value:+.3f}, more than {max_shift}")
        return failed


def _agreement_value(a: Agreement | Undefined | None) -> float | None:
    if not isinstance(a, Agreement):
        return None
    return a.kappa.value if isinstance(a.kappa, Interval) else a.agreement.value


def compare(
    store: Store,
    a: Judge,
    b: Judge,
    rubric: str,
    since: float,
    until: float,
    top: int = 10,
) -> Comparison:
    results = {str(j): _results(store, j, rubric, since, until) for j in (a, b)}
    labels = _labels(store, rubric)
    routes = sorted({r["route"] for rows in results.values() for r in rows})
    slices = []
    overall: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for route in ["", *routes]:
        s = Slice(route)
        keyed = {}
        for name, rows in results.items():
            mine = [r for r in rows if not route or r["route"] == route]
            keyed[name] = {(r["trace_id"], r["span_id"]): r for r in mine}
            pairs = [
                Pair(h, int(r["passed"]), hs, r["score"])
                for key, r in keyed[name].items()
                for h, hs in labels.get(key, ())
            ]
            scale = (int(mine[0]["scale_min"]), int(mine[0]["scale_max"])) if mine else (1, 10)
            s.agreement[name] = agreement(pairs, scale) if pairs else Undefined("no labels")
            s.sli[name] = (
                weighted(((float(r["passed"]), float(r["sample_prob"])) for r in mine), rate=True)
                if mine
                else None
            )
        ka, kb = keyed[str(a)], keyed[str(b)]
        both = sorted(set(ka) & set(kb))
        s.shift = shift_of(
            [(float(ka[k]["score"]), float(kb[k]["score"]), int(ka[k]["passed"]),
              int(kb[k]["passed"])) for k in both]
        )  # fmt: skip
        slices.append(s)
        if not route:
            overall = keyed
    ka, kb = overall[str(a)], overall[str(b)]  # every route's results, by item
    apart = sorted(
        (
            {"trace_id": k[0], "span_id": k[1], "route": ka[k]["route"], "ts": ka[k]["ts"],
             "score_a": float(ka[k]["score"]), "score_b": float(kb[k]["score"])}
            for k in set(ka) & set(kb)
        ),
        key=lambda d: (-abs(d["score_b"] - d["score_a"]), d["trace_id"], d["span_id"]),
    )  # fmt: skip
    return Comparison(
        a, b, rubric, slices, [d for d in apart if d["score_a"] != d["score_b"]][:top]
    )


QUEUE_REASON = "judge_disagreement"  # ``review.queue.REASONS``


def queue_disagreements(store: Store, report: Comparison, n: int, now: float) -> int:
    """Put the ``n`` items the two judges are furthest apart on in the review queue (those
    not queued already), to be labelled on the compared rubric; returns how many."""
    items = report.disagreements[:n]
    if not items:
        return 0
    keys = ", ".join(f"({sql_str(d['trace_id'])}, {sql_str(d['span_id'])})" for d in items)
    queued = {
        (r["trace_id"], r["span_id"])
        for r in store.query(
            f"SELECT trace_id, span_id FROM {store.database}.review_queue FINAL "
            f"WHERE (trace_id, span_id) IN ({keys})"
        )
    }
    rows = [
        {"trace_id": d["trace_id"], "span_id": d["span_id"], "route": d["route"], "ts": d["ts"],
         "reason": QUEUE_REASON, "rubric": report.rubric, "reviewers_required": 1,
         "detail": f"{report.a} {d['score_a']:g} vs {report.b} {d['score_b']:g}",
         "enqueued_at": now}
        for d in items
        if (d["trace_id"], d["span_id"]) not in queued
    ]  # fmt: skip
    if rows:
        store.insert("review_queue", ndjson(rows))
    return len(rows)
