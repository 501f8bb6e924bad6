"""``stream-eval review agreement`` as tables: judge vs human agreement per judge model and
rubric version, and the judge's pass rate per route corrected for its measured error.

An interval reads ``0.25 [0.10, 0.40]`` in the table and csv and is
``{"value", "lower", "upper"}`` in json; an undefined statistic reads
``undefined (<reason>)``, and in json is ``{"value": null, "lower": null, "upper": null,
"undefined": "<reason>"}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stream_eval.estimates import JUDGE_PASS, Estimate
from stream_eval.judge_segments import JUDGE_LABEL, current_judge
from stream_eval.review.agreement import (
    Interval,
    Pair,
    Undefined,
    agreement,
    corrected_pass_rate,
    labelled_pairs,
)
from stream_eval.rubrics import RUBRICS
from stream_eval.sink.store import Store
from stream_eval.sli_registry import JUDGE_GRAIN, SLIS
from stream_eval.tables import Column, Shown, Table

FEW_CALIBRATION = "needs at least two calibration labels"
PERCENT = "{:.1%}"


def interval_cell(x: Interval | Undefined, fmt: str = "{:.2f}") -> Shown:
    if isinstance(x, Undefined):
        data = {"value": None, "lower": None, "upper": None, "undefined": x.reason}
        return Shown(f"undefined ({x.reason})", data)
    text = f"{fmt.format(x.value)} [{fmt.format(x.lower)}, {fmt.format(x.upper)}]"
    return Shown(text, {"value": x.value, "lower": x.lower, "upper": x.upper})


def agreement_table(groups: Mapping[tuple[str, str, str], Sequence[Pair]], days: float) -> Table:
    columns = [Column(c) for c in ("judge model", "rubric", "version")]
    columns.append(Column("labels", right=True))
    columns += [Column(c) for c in ("agreement", "kappa", "weighted kappa", "TPR", "TNR")]
    table = Table(
        "agreement", columns, title=f"judge vs human, last {days:g} days",
        empty="no labels compared with a judge result yet",
    )  # fmt: skip
    for (model, rubric, version), pairs in groups.items():
        r = RUBRICS.get(rubric)
        a = agreement(pairs, (r.scale_min, r.scale_max) if r else (1, 10))
        stats = (a.agreement, a.kappa, a.weighted_kappa, a.tpr, a.tnr)
        table.add(model, rubric, version, a.n, *(interval_cell(s) for s in stats))
    return table


@dataclass(frozen=True, slots=True)
class RouteRate:
    route: str
    judge: Interval  # the judge's pass rate as the dashboards estimate it
    corrected: Interval | Undefined  # minus its mean error on the calibration labels
    judge_name: str = ""  # the route's current judge (judge_segments.JUDGE_LABEL)
    calibration_labels: int = 0  # of that judge (its model, on its rubric versions)


@dataclass(frozen=True, slots=True)
class Corrected:
    calibration_labels: int
    routes: list[RouteRate]


def corrected_rates(store: Store, days: float) -> Corrected:
    """Per route with judge results in the last ``days``: its current judge's pass rate, and
    the same corrected for that judge's error measured on its calibration labels (labels
    compared with the same judge model on the same rubric versions)."""
    groups = labelled_pairs(store, days, "calibration")
    e = JUDGE_PASS
    since = f"window_start > now() - INTERVAL {int(days * 86400)} SECOND"
    den = SLIS["judge_pass_rate"].denominator
    rows = store.query(
        f"SELECT route, judge_model, rubric_versions, any({JUDGE_LABEL}) AS judge, "
        f"{e.value} AS v, {e.lower} AS lo, {e.upper} AS hi, {e.n_eff} AS n_eff, "
        f"toUInt64(sum(judge_scored)) AS n FROM {store.database}.{JUDGE_GRAIN.minute} "
        f"WHERE {since} AND {current_judge(den, ('route',), since, store.database)} "
        f"GROUP BY route, judge_model, rubric_versions HAVING {den} > 0 ORDER BY route"
    )
    routes = []
    for r in rows:
        # results written before judges carried their rubric versions: by model alone
        versions = set(str(r["rubric_versions"]).split(",")) - {""}
        calibration = [
            p
            for (model, rubric, version), ps in groups.items()
            if model == r["judge_model"] and (not versions or f"{rubric}@{version}" in versions)
            for p in ps
        ]
        est = Estimate(r["v"], r["lo"], r["hi"], r["n_eff"], int(r["n"]))
        c: Interval | Undefined = (
            corrected_pass_rate(est, calibration)
            if len(calibration) >= 2
            else Undefined(FEW_CALIBRATION)
        )
        interval = Interval(est.value, est.lower, est.upper)
        routes.append(RouteRate(r["route"], interval, c, str(r["judge"]), len(calibration)))
    return Corrected(sum(len(ps) for ps in groups.values()), routes)


def corrected_table(c: Corrected) -> Table:
    table = Table("corrected", [
        Column("route"), Column("judge pass rate"), Column("corrected pass rate"),
        Column("calibration labels", right=True), Column("judge"),
    ], title="the current judge's pass rate, corrected for its measured error")  # fmt: skip
    for x in c.routes:
        table.add(x.route, interval_cell(x.judge, PERCENT), interval_cell(x.corrected, PERCENT),
                  x.calibration_labels, x.judge_name)  # fmt: skip
    return table


def corrected_lines(c: Corrected) -> list[str]:
    """The table format's sentences, one per route."""
    if c.calibration_labels < 2:
        return [f"corrected pass rate: {FEW_CALIBRATION}"]
    return [
        f"{x.route}: judge pass rate {interval_cell(x.judge, PERCENT).text}, corrected for "
        f"the judge's error {interval_cell(x.corrected, PERCENT).text} "
        f"({c.calibration_labels} calibration labels)"
        for x in c.routes
    ]
