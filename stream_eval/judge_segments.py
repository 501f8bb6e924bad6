"""Reading judge SLIs within one judge (``sli_registry.JUDGE_GRAIN``): how a judge is named
on a panel or in a table, and which judge is a slice's current one.

A judge is its model, the version its provider served and the versions of the rubrics the
route is judged on (``sli_registry.JUDGE_KEYS``); a judge SLI is never summed over two.
Where one number per slice is shown (a stat panel, the CLI's table, the corrected pass
rate), it is the slice's **current judge**: the one with the newest minute, in the range
read, in which the SLI applies (its denominator is not zero).
"""

from __future__ import annotations

import re

from stream_eval.sli_registry import JUDGE_GRAIN, JUDGE_KEYS

# The judge of a row, as panels and tables name it: "gpt-4o-mini (gpt-4o-mini-2024-07-18) ·
# helpfulness@1+3f2a91c0,faithfulness@1+b07c55e1" (the served version when it differs).
JUDGE_LABEL = (
    "concat(judge_model, if(judge_model_version IN ('', judge_model), '', "
    "concat(' (', judge_model_version, ')')), "
    "if(rubric_versions = '', '', concat(' · ', rubric_versions)))"
)


def applies(denominator: str) -> str:
    """The row condition under which an SLI with this denominator (a sum of counters,
    ``sum(judge_w)``) applies: any of its counters is not zero."""
    cols = re.findall(r"sum\((\w+)\)", denominator)
    if not cols:
        raise ValueError(f"not a sum of counters: {denominator!r}")
    return "(" + " OR ".join(f"{c} != 0" for c in cols) + ")"


def current_judge(denominator: str, keys: tuple[str, ...], where: str, db: str) -> str:
    """A condition on ``judge_sli_minute`` rows: the row is of its ``keys``' current judge,
    among the rows that meet ``where``, for the SLI with this denominator."""
    k = ", ".join(keys)
    picked = ", ".join(f"tupleElement(j, {i + 1})" for i in range(len(JUDGE_KEYS)))
    return f"""({k}, {", ".join(JUDGE_KEYS)}) IN (
    SELECT {k}, {picked}
    FROM (SELECT {k}, argMax(tuple({", ".join(JUDGE_KEYS)}), window_start) AS j
          FROM {db}.{JUDGE_GRAIN.minute}
          WHERE {where} AND {applies(denominator)}
          GROUP BY {k}))"""
