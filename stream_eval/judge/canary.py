"""The drift canary: a fixed, versioned set of judge requests re-scored by the live judge
on a schedule, so that a judge that starts scoring identical inputs differently (a
provider updating a model under a pinned name, a rubric edited in place) shows as a
judge regression, apart from any change of the product.

- **The set** (``build``): judge requests as the live judge received them, taken from the
  judge-requests topic over a range (``judge.shadow.range_of``), ``size`` of them chosen
  by a hash of their key (deterministic), written one JSON request per line. Its version
  is the SHA-256 of its bytes (its first 12 hex digits): an edited set is another set.
- **A run** (``run_canary``): every (request, rubric) of the set scored by the live
  judge's client (its prompts, limits and retries; no dedup: the point is to score
  again), refused before any call if its worst-case cost is over ``budget_usd``; its
  scores land in ``judge_canary`` (a row per item), its decision in ``judge_canary_runs``.
- **The decision** (``decide``), per rubric: each item's score against its median over the
  last ``baseline_runs`` runs of the same set, judge model and rubric version (their
  run-to-run variation is the baseline's spread). Under no drift an item's score moves up
  as often as down; McNemar's exact test on the items that moved (up against down, as
  ``judge.compare`` tests flips) gives the chance of a shift this one-sided, and the run
  is a **drift** when that p-value is below ``alpha`` and the mean shift is at least
  ``min_shift`` score points. The first run of a set is its baseline and never a drift.

The alert rule ``stream-eval-judge-canary-drift`` fires on the newest run's decision.
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from stream_eval.config import Settings
from stream_eval.judge.client import JudgeClient
from stream_eval.judge.compare import mcnemar_exact
from stream_eval.judge.request import JudgeRequest, decode_judge_request
from stream_eval.judge.shadow import Range, read
from stream_eval.judge.stage import judged_on
from stream_eval.rubrics import Rubric
from stream_eval.sink.base import Store
from stream_eval.sink.literals import sql_str
from stream_eval.sink.rows import ndjson

ITEMS = "judge_canary"
RUNS = "judge_canary_runs"


def _key(req: JudgeRequest) -> str:
    """An item of the set (the history's SQL builds the same from its columns)."""
    return f"{req.unit}/{req.trace_id}/{req.span_id}"


def set_version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def build(settings: Settings, rng: Range, size: int, path: Path) -> tuple[int, str]:
    """The canary set from a range of the judge-requests topic: ``size`` requests chosen by
    a hash of their key, written to ``path``; returns how many and the set's version."""
    picked: list[tuple[str, bytes]] = []
    for batch in read(settings, rng, "canary-build", 500):
        for m in batch:
            try:
                req = decode_judge_request(m.value)
            except ValueError:
                continue
            picked.append((hashlib.sha256(_key(req).encode()).hexdigest(), m.value))
    chosen = dict(sorted(picked)[:size])  # one per key
    data = b"".join(orjson.dumps(orjson.loads(v)) + b"\n" for v in chosen.values())
    path.write_bytes(data)
    return len(chosen), set_version(data)


@dataclass(frozen=True, slots=True)
class Decision:
    rubric: str
    items: int  # scored in this run and in the baseline
    mean_shift: float  # this run - the baseline's median, mean over the items
    up: int
    down: int
    p_value: float | None  # McNemar's exact test, up against down (None: nothing moved)
    drift: bool
    baseline_runs: int  # 0: this run is the set's first (its baseline)


def decide(
    rubric: str,
    scores: dict[str, float],
    history: list[dict[str, float]],
    min_shift: float,
    alpha: float,
) -> Decision:
    """This run's ``scores`` (item key -> score) against the earlier runs' (``history``)."""
    keys = [k for k in scores if any(k in h for h in history)]
    if not history or not keys:
        return Decision(rubric, 0, 0.0, 0, 0, None, False, len(history))
    diffs = [scores[k] - statistics.median(h[k] for h in history if k in h) for k in keys]
    up = sum(1 for d in diffs if d > 0)
    down = sum(1 for d in diffs if d < 0)
    mean = sum(diffs) / len(diffs)
    p = mcnemar_exact(up, down)
    drift = p is not None and p < alpha and abs(mean) >= min_shift
    return Decision(rubric, len(keys), mean, up, down, p, drift, len(history))


@dataclass(slots=True)
class CanaryRun:
    run_id: str
    set_version: str
    items: int  # (request, rubric) pairs in the set
    est_cost_usd: float
    scored: int = 0
    failed: int = 0
    cost_usd: float = 0.0
    decisions: list[Decision] = field(default_factory=list)


def _items(settings: Settings, data: bytes) -> list[tuple[JudgeRequest, Rubric]]:
    out = []
    for line in data.splitlines():
        if not line.strip():
            continue
        req = decode_judge_request(line)
        out += [(req, r) for r in judged_on(settings, req)]
    return out


def _history(
    store: Store, version: str, model: str, rubric: Rubric, runs: int
) -> list[dict[str, float]]:
    db = store.database
    rows = store.query(
        f"SELECT run_id, concat(unit, '/', trace_id, '/', span_id) AS k, score "
        f"FROM {db}.{ITEMS} WHERE set_version = {sql_str(version)} "
        f"AND judge_model = {sql_str(model)} AND rubric = {sql_str(rubric.name)} "
        f"AND rubric_version = {sql_str(rubric.version)} AND run_id IN ("
        f"SELECT run_id FROM {db}.{RUNS} WHERE set_version = {sql_str(version)} "
        f"AND judge_model = {sql_str(model)} AND rubric = {sql_str(rubric.name)} "
        f"ORDER BY run_at DESC LIMIT {runs})"
    )
    by_run: dict[str, dict[str, float]] = {}
    for r in rows:
        by_run.setdefault(r["run_id"], {})[r["k"]] = float(r["score"])
    return list(by_run.values())


async def run_canary(
    settings: Settings,
    store: Store,
    path: Path,
    budget_usd: float,
    baseline_runs: int = 5,
    min_shift: float = 0.5,
    alpha: float = 0.01,
    client: JudgeClient | None = None,
) -> CanaryRun:
    """One run of the set at ``path`` by the live judge; raises ``ValueError`` before any
    call when its worst-case cost is over ``budget_usd``."""
    data = path.read_bytes()
    version = set_version(data)
    items = _items(settings, data)
    client = client or JudgeClient.from_settings(settings.judge)
    prepared = [client.prepare(r, req) for req, r in items]
    est = sum(p.est_cost_usd for p in prepared)
    run = CanaryRun(uuid.uuid4().hex[:12], version, len(items), est)
    if est > budget_usd:
        raise ValueError(
            f"a canary run of {len(items)} items may cost ${est:.4f}, over its budget "
            f"${budget_usd:.4f} (--budget-usd): nothing was called"
        )
    model = settings.judge.model
    outcomes = await asyncio.gather(*(client.call(p) for p in prepared))
    at = time.time()
    rows: list[dict[str, Any]] = []
    scores: dict[Rubric, dict[str, float]] = {}
    for (req, rubric), o in zip(items, outcomes, strict=True):
        run.cost_usd += o.cost_usd
        if o.verdict is None:
            run.failed += 1
            continue
        run.scored += 1
        scores.setdefault(rubric, {})[_key(req)] = o.verdict.score
        rows.append({
            "run_id": run.run_id, "run_at": at, "set_version": version, "unit": req.unit,
            "trace_id": req.trace_id, "span_id": req.span_id, "route": req.route,
            "rubric": rubric.name, "rubric_version": rubric.version, "judge_model": model,
            "judge_model_version": o.served_model, "score": o.verdict.score,
            "passed": int(rubric.passed(o.verdict.score)),
        })  # fmt: skip
    runs = []
    for rubric, got in scores.items():
        d = decide(rubric.name, got, _history(store, version, model, rubric, baseline_runs),
                   min_shift, alpha)  # fmt: skip
        run.decisions.append(d)
        runs.append({
            "run_id": run.run_id, "run_at": at, "set_version": version, "judge_model": model,
            "rubric": rubric.name, "rubric_version": rubric.version, "items": d.items,
            "mean_shift": d.mean_shift, "up": d.up, "down": d.down,
            "p_value": d.p_value, "drift": int(d.drift), "baseline_runs": d.baseline_runs,
            "cost_usd": run.cost_usd,
        })  # fmt: skip
    store.insert(ITEMS, ndjson(rows))
    store.insert(RUNS, ndjson(runs))
    return run
