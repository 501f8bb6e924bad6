"""The label form: the rubrics an item is labelled on, all in one form, its fields, and the
labels a posted form makes.

Each rubric has a verdict (``verdict.<rubric>``: pass, fail, or empty: not labelled) and a
score (``score.<rubric>``); the corrected answer and the note are the item's and go with
every label of the save. A post that names one ``rubric`` (with ``verdict`` and ``score``)
is one label, as forms before this one sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stream_eval.review.labels import InvalidLabel, Label
from stream_eval.rubrics import rubrics_of
from stream_eval.unit_ids import unit_of


@dataclass(frozen=True, slots=True)
class _Applies:
    documents: Sequence[Any]
    reference_answer: str | None = None


def form_rubrics(
    span_id: str,
    documents: Sequence[Any],
    judged: Sequence[Mapping[str, Any]],
    queued: str,
    posted: Mapping[str, str] | None = None,
) -> list[str]:
    """The rubrics of an item's form, in order: the one it was queued for first, then every
    other that applies to it (a call's faithfulness needs retrieved documents), that the
    judge scored or that a ``posted`` form gave a verdict, in the registry's order."""
    rubrics = rubrics_of(unit_of(span_id))
    scored = {str(j["rubric"]) for j in judged}
    given = {n for n in rubrics if (posted or {}).get(f"verdict.{n}")}
    item = _Applies(documents)
    names = [
        n for n, r in rubrics.items() if n == queued or n in scored or n in given or r.applies(item)
    ]
    return sorted(names, key=lambda n: n != queued)


def filled(mine: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The form filled with the reviewer's newest label of each rubric on the item (newest
    first), the corrected answer and note of the newest."""
    if not mine:
        return {}
    out = {
        "corrected_answer": str(mine[0].get("corrected_answer") or ""),
        "note": str(mine[0].get("note") or ""),
    }
    for m in mine:
        score = m.get("score")
        out[f"verdict.{m['rubric']}"] = str(m["verdict"])
        out[f"score.{m['rubric']}"] = "" if score is None else f"{float(score):g}"
    return out


def labels_of(values: Mapping[str, str], trace_id: str, span_id: str, reviewer: str) -> list[Label]:
    """The labels of a posted form, every one valid, or ``InvalidLabel`` saying what is
    wrong (nothing is recorded then)."""
    unit = unit_of(span_id)
    rubrics = rubrics_of(unit)
    corrected, note = values.get("corrected_answer", "").strip(), values.get("note", "").strip()
    if "rubric" in values:  # one rubric, as a form before this one posted it
        wanted = [(values["rubric"], values.get("verdict", ""), values.get("score", ""))]
        if values["rubric"] not in rubrics:
            raise InvalidLabel(f"{values['rubric']} is not a rubric of this {unit}")
    else:
        wanted = [
            (n, values.get(f"verdict.{n}", ""), values.get(f"score.{n}", "")) for n in rubrics
        ]
    labels = []
    for name, verdict, score in wanted:
        verdict, score = verdict.strip(), score.strip()
        if not verdict:
            if score:
                raise InvalidLabel(f"{name}: a score needs a verdict (pass or fail)")
            continue
        try:
            value = float(score) if score else None
        except ValueError:
            raise InvalidLabel(f"{name}: the score must be a number, got {score[:40]!r}") from None
        labels.append(Label(trace_id, span_id, reviewer, name, verdict, value, corrected, note))
    if not labels:
        raise InvalidLabel("Give a verdict (pass or fail) for at least one rubric.")
    return labels
