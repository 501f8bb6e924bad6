"""The golden dataset: reviewed production traces as versioned JSONL, one JSON Schema.

A dataset is a directory of immutable versions, ``v0001.jsonl``, ``v0002.jsonl``...; each
version holds every example of the one before plus the newly promoted ones, one JSON
object a line, valid against ``schemas/golden.schema.json``. Promotion
(``stream-eval golden promote``) takes the reviewed (trace, LLM call)s whose newest
label has a promoted verdict (default ``fail``: the production failures), builds an
example from the trace (input, system message, retrieved context) and the label (the
corrected answer as reference answer; the checks that applied are expected to pass),
skips what the dataset already holds (same example id, or same trace), writes the next
version and records each promotion in ``golden_promotions`` (which production failure
became which example, in which version, when). Reviewed sessions and agent runs become
multi-turn examples and agent tasks (``golden_units``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from stream_eval.golden_units import reviewed_units, run_example, session_example, unit_example_key
from stream_eval.privacy.erase import erased_ids
from stream_eval.sink.literals import sql_str
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import Store
from stream_eval.unit_ids import unit_of


class InvalidExample(ValueError):
    pass


@lru_cache(maxsize=1)
def _validator() -> Callable[[Any], Any]:
    text = resources.files("stream_eval.schemas").joinpath("golden.schema.json").read_bytes()
    return fastjsonschema.compile(orjson.loads(text))


def validate(example: dict[str, Any]) -> None:
    try:
        _validator()(example)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise InvalidExample(exc.message) from None


def example_id(
    route: str, system: str, user_input: str, context: list[dict[str, Any]], unit_key: str = ""
) -> str:
    """``unit_key``: a whole unit's (``golden_units.unit_example_key``), "" for a call."""
    key = orjson.dumps([route, system, user_input, context, *([unit_key] if unit_key else [])])
    return hashlib.blake2b(key, digest_size=8).hexdigest()


def versions(directory: Path) -> list[Path]:
    return sorted(directory.glob("v[0-9][0-9][0-9][0-9].jsonl"))


def load(path: Path) -> list[dict[str, Any]]:
    """A dataset version (or any JSONL of examples), each line validated."""
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            example = orjson.loads(line)
            validate(example)
        except (orjson.JSONDecodeError, InvalidExample) as exc:
            raise InvalidExample(f"{path}:{i}: {exc}") from None
        out.append(example)
    return out


def dataset_version(path: Path) -> int:
    stem = path.stem
    return int(stem[1:]) if stem.startswith("v") and stem[1:].isdigit() else 0


@dataclass(frozen=True, slots=True)
class Promotion:
    path: Path | None  # the version written; None when nothing was new
    version: int
    added: int
    already: int  # in the dataset already (same example or same trace)
    no_reference: int  # failures without a corrected answer: nothing to expect


def _reviewed(store: Store, verdicts: tuple[str, ...]) -> list[dict[str, Any]]:
    db = store.database
    wanted = ", ".join(sql_str(v) for v in verdicts)
    return store.query(
        f"""
SELECT l.trace_id AS trace_id, l.span_id AS span_id, l.label_id AS label_id,
       l.reviewer AS reviewer, l.verdict AS verdict, l.rubric AS rubric,
       l.corrected_answer AS corrected_answer, toFloat64(l.labelled_at) AS labelled_at,
       l.reason AS reason, t.route AS route, t.input_text AS input_text,
       t.system_text AS system_text, t.output_text AS output_text,
       t.documents_json AS documents_json, c.checks AS checks
FROM
(
    SELECT * FROM {db}.review_labels FINAL
    ORDER BY labelled_at DESC LIMIT 1 BY trace_id, span_id
) AS l
INNER JOIN {db}.traces AS t FINAL ON l.trace_id = t.trace_id AND l.span_id = t.span_id
LEFT JOIN
(
    SELECT trace_id, span_id, groupUniqArray(check_name) AS checks
    FROM {db}.check_results GROUP BY trace_id, span_id
) AS c ON l.trace_id = c.trace_id AND l.span_id = c.span_id
WHERE l.verdict IN ({wanted})
ORDER BY l.labelled_at, l.trace_id, l.span_id"""
    )


def promote(
    store: Store,
    directory: Path,
    *,
    verdicts: tuple[str, ...] = ("fail",),
    now: float | None = None,
) -> Promotion:
    now = time.time() if now is None else now
    directory.mkdir(parents=True, exist_ok=True)
    existing = versions(directory)
    erased = erased_ids(store)
    previous = load(existing[-1]) if existing else []
    current = [e for e in previous if not _erased(e, erased)]
    dropped = len(current) < len(previous)
    version = (dataset_version(existing[-1]) if existing else 0) + 1
    ids = {e["id"] for e in current}
    traces = {(e["provenance"]["trace_id"], e["provenance"].get("span_id", "")) for e in current}
    new: list[dict[str, Any]] = []
    already = no_reference = 0
    for r in _reviewed(store, verdicts):  # calls
        context = orjson.loads(r["documents_json"]) if r["documents_json"] else []
        eid = example_id(r["route"], r["system_text"], r["input_text"], context)
        if eid in ids or (r["trace_id"], r["span_id"]) in traces:
            already += 1
            continue
        reference = r["corrected_answer"] or (r["output_text"] if r["verdict"] == "pass" else "")
        if not reference:
            no_reference += 1
            continue
        example = {
            "id": eid, "route": r["route"], "input": r["input_text"], "system": r["system_text"],
            "context": context, "reference_answer": reference, "must_contain": [],
            "must_not_contain": [],
            "expected_checks": dict.fromkeys(sorted(r["checks"] or ()), True),
            "rubrics": [r["rubric"]] if r["rubric"] else [],
            "provenance": {
                "trace_id": r["trace_id"], "span_id": r["span_id"], "label_id": r["label_id"],
                "reviewer": r["reviewer"], "verdict": r["verdict"], "reason": r["reason"],
                "labelled_at": r["labelled_at"], "dataset_version": version, "promoted_at": now,
            },
        }  # fmt: skip
        validate(example)
        new.append(example)
        ids.add(eid)
        traces.add((r["trace_id"], r["span_id"]))
    for r in reviewed_units(store, verdicts):  # whole sessions and agent runs
        build = session_example if unit_of(r["span_id"]) == "session" else run_example
        found = build(store, r)
        if found is None:
            continue
        eid = example_id(found["route"], "", found["input"], [], unit_example_key(found))
        if eid in ids or (r["trace_id"], r["span_id"]) in traces:
            already += 1
            continue
        example = {
            "id": eid, **found, "must_contain": [], "must_not_contain": [],
            "rubrics": [r["rubric"]] if r["rubric"] else [],
            "provenance": {
                "trace_id": r["trace_id"], "span_id": r["span_id"], "label_id": r["label_id"],
                "reviewer": r["reviewer"], "verdict": r["verdict"], "reason": r["reason"],
                "labelled_at": r["labelled_at"], "dataset_version": version, "promoted_at": now,
            },
        }  # fmt: skip
        validate(example)
        new.append(example)
        ids.add(eid)
        traces.add((r["trace_id"], r["span_id"]))
    if not new and not dropped:
        return Promotion(None, version - 1, 0, already, no_reference)
    path = _write_version(directory, version, [*current, *new])
    rows = [
        {
            "dataset": directory.name, "version": version, "example_id": e["id"],
            "trace_id": e["provenance"]["trace_id"], "span_id": e["provenance"]["span_id"],
            "label_id": e["provenance"]["label_id"], "route": e["route"], "promoted_at": now,
        }
        for e in new
    ]  # fmt: skip
    store.insert("golden_promotions", ndjson(rows))
    return Promotion(path, version, len(new), already, no_reference)


def _write_version(directory: Path, version: int, examples: list[dict[str, Any]]) -> Path:
    """Version ``version`` of the dataset: it appears whole or not at all."""
    path = directory / f"v{version:04d}.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in examples))
    tmp.rename(path)
    return path


def _erased(example: dict[str, Any], erased: set[str]) -> bool:
    return example["provenance"]["trace_id"] in erased


def drop_erased(store: Store, directory: Path) -> Path | None:
    """Write the next version of the dataset in ``directory`` without the examples of erased
    traces and sessions (``privacy.erase``); None when its newest version has none."""
    existing = versions(directory)
    if not existing:
        return None
    erased = erased_ids(store)
    current = load(existing[-1])
    kept = [e for e in current if not _erased(e, erased)]
    if len(kept) == len(current):
        return None
    return _write_version(directory, dataset_version(existing[-1]) + 1, kept)
