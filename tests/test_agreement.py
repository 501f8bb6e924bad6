"""Agreement statistics the labels do not define are undefined, with the reason: never a
made-up 1.0, a zero-width interval or NaN."""

from __future__ import annotations

import math

import pytest
from helpers import nonempty

from stream_eval.review.agreement import (
    FEW_SCORES,
    NO_HUMAN_FAIL,
    NO_HUMAN_PASS,
    NO_SCORE_VARIATION,
    NO_VARIATION,
    Interval,
    Pair,
    Undefined,
    agreement,
    cohen_kappa,
    quadratic_kappa,
)
from stream_eval.review.report import interval_cell


@pytest.mark.parametrize(
    ("human", "judge"),
    [(1, 1), (0, 0), (1, 0), (0, 1)],
    ids=["both pass", "both fail", "people pass, judge fails", "people fail, judge passes"],
)
def test_kappa_is_undefined_when_neither_side_varies(human: int, judge: int) -> None:
    pairs = [Pair(human, judge, 7.0, 7.0)] * 5
    assert cohen_kappa(pairs)[0] is None
    a = agreement(pairs)
    assert a.kappa == Undefined(NO_VARIATION)
    assert a.weighted_kappa == Undefined(NO_SCORE_VARIATION)  # one score on each side
    assert a.agreement.value == (1.0 if human == judge else 0.0)  # the rate stays defined


def test_kappa_is_defined_when_one_side_varies() -> None:
    """The judge passes everything, people do not: agreement is no better than chance."""
    pairs = [Pair(1, 1)] * 3 + [Pair(0, 1)] * 2
    a = agreement(pairs)
    assert isinstance(a.kappa, Interval)
    assert a.kappa.value == pytest.approx(0.0)
    assert isinstance(a.tnr, Interval) and a.tnr.value == 0.0


def test_rates_without_their_labels_are_undefined() -> None:
    only_pass = agreement([Pair(1, 1), Pair(1, 0)])
    assert isinstance(only_pass.tpr, Interval) and only_pass.tpr.value == 0.5
    assert only_pass.tnr == Undefined(NO_HUMAN_FAIL)
    only_fail = agreement([Pair(0, 1), Pair(0, 0)])
    assert only_fail.tpr == Undefined(NO_HUMAN_PASS)
    assert isinstance(only_fail.tnr, Interval) and only_fail.tnr.value == 0.5


def test_weighted_kappa_needs_two_scored_pairs() -> None:
    a = agreement([Pair(1, 1, 8.0, 9.0), Pair(0, 1, None, 8.0), Pair(0, 0)])
    assert a.weighted_kappa == Undefined(FEW_SCORES)


def test_quadratic_kappa_of_constant_scores_is_undefined() -> None:
    assert quadratic_kappa([(5, 5), (5, 5), (5, 5)], 1, 10) is None
    assert quadratic_kappa([(5, 3), (5, 3)], 1, 10) is None  # each side one score
    assert quadratic_kappa([(5, 5), (6, 5)], 1, 10) == pytest.approx(0.0)


def test_the_bootstrap_leaves_out_resamples_without_variation() -> None:
    """Of (5, 5) and (6, 5), every resample that defines kappa gives 0; the resamples of
    one pair alone define nothing and used to count as 1.0, widening the interval to 1."""
    a = agreement([Pair(1, 1, 5.0, 5.0), Pair(1, 1, 6.0, 5.0)])
    w = a.weighted_kappa
    assert isinstance(w, Interval)
    assert (w.value, w.lower, w.upper) == (pytest.approx(0.0), 0.0, 0.0)


def test_no_statistic_is_nan_and_each_undefined_one_says_why() -> None:
    a = agreement([Pair(1, 1, 8.0, 8.0)] * 4)
    stats = (a.agreement, a.kappa, a.weighted_kappa, a.tpr, a.tnr)
    undefined = [s for s in stats if isinstance(s, Undefined)]
    assert [s.reason for s in undefined] == [NO_VARIATION, NO_SCORE_VARIATION, NO_HUMAN_FAIL]
    for s in nonempty(stats):
        if isinstance(s, Interval):
            assert not any(math.isnan(x) for x in (s.value, s.lower, s.upper))
    cell = interval_cell(a.kappa)
    assert cell.text == "undefined (no variation in labels)"
    assert cell.data == {"value": None, "lower": None, "upper": None, "undefined": NO_VARIATION}
    shown = interval_cell(Interval(0.25, 0.1, 0.4))
    assert (shown.text, shown.data) == (
        "0.25 [0.10, 0.40]", {"value": 0.25, "lower": 0.1, "upper": 0.4},
    )  # fmt: skip
