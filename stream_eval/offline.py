"""The offline runner: an app's outputs on a golden dataset, scored like the stream.

The same check functions (``checks.run_checks``) and the same judge rubrics and client
(``judge``) as the online path, so offline and online scores sit on one scale. An
example passes when its output is there, contains every ``must_contain`` and no
``must_not_contain`` (case-insensitive), every check in ``expected_checks`` comes out as
expected, and every rubric it names that the judge scored passes. Outputs come from a
JSONL file (``{"id", "output"}``), a command (run once per example, the example as JSON
on stdin, the output on stdout), or an OpenAI-compatible endpoint (the example's system
message and input as chat messages).

A multi-turn example (``unit = "session"``, ``golden_units``) is replayed turn by turn:
each earlier turn's user message is sent with the conversation so far (``history``: the
user messages and the app's own answers of this replay), then ``input``; the last
answer is the output, and the replayed conversation is what the unit rubric
(``conversation_resolution``) is judged on. An agent task (``unit = "run"``) is its
task in, the final answer out, judged on the run rubrics.

Each run has an id; its results can be written to ClickHouse (``offline_results``,
``source = 'offline'``, with the dataset and its version) and to a JSON report; the
summary compares with the previous run of the same dataset (the store's, or a report
file) and lists the examples that flipped.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from stream_eval.agent_run import AgentRun
from stream_eval.checks import run_checks
from stream_eval.checks.sessions import Turn
from stream_eval.config import Settings
from stream_eval.judge.request import JudgeRequest
from stream_eval.judge.units import bounded, run_entries, session_entries
from stream_eval.rubrics import ALL_RUBRICS, RUBRICS
from stream_eval.sink.literals import sql_str
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import Store
from stream_eval.trace import Document, Trace


class Replies(dict[str, str]):
    """id -> the app's output (a conversation's: its answer to the last turn); ``earlier``:
    id -> its answers to a conversation's earlier turns, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.earlier: dict[str, list[str]] = {}


Outputs = Callable[[Sequence[dict[str, Any]]], dict[str, str]]  # examples -> id -> output
Ask = Callable[[dict[str, Any], str, list[dict[str, str]]], str]  # example, input, history


@dataclass(slots=True)
class ExampleResult:
    example_id: str
    route: str
    passed: bool
    failures: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # the checks that applied
    failed_checks: list[str] = field(default_factory=list)
    judge: dict[str, float] = field(default_factory=dict)  # rubric -> score


@dataclass(slots=True)
class RunSummary:
    run_id: str
    dataset: str
    dataset_version: int
    examples: int
    passed: int
    previous_pass_rate: float | None
    newly_failing: list[str]
    newly_passing: list[str]
    results: list[ExampleResult]

    @property
    def pass_rate(self) -> float:
        return self.passed / self.examples if self.examples else 0.0


# --- where the outputs come from ------------------------------------------------------


def outputs_from_file(path: Path) -> Outputs:
    """``{"id", "output"}`` lines; a conversation's may add ``turns``: the answers to its
    earlier turns."""

    def read(_: Sequence[dict[str, Any]]) -> dict[str, str]:
        out = Replies()
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                obj = orjson.loads(line)
                out[str(obj["id"])] = str(obj.get("output") or "")
                if obj.get("turns"):
                    out.earlier[str(obj["id"])] = [str(a) for a in obj["turns"]]
        return out

    return read


def replay(examples: Sequence[dict[str, Any]], ask: Ask) -> Replies:
    """Each example asked of the app; a conversation turn by turn, with its history."""
    out = Replies()
    for e in examples:
        history: list[dict[str, str]] = []
        answers = []
        for turn in e.get("turns") or ():
            answers.append(ask(e, turn["input"], history))
            history += [{"role": "user", "content": turn["input"]},
                        {"role": "assistant", "content": answers[-1]}]  # fmt: skip
        out[e["id"]] = ask(e, e["input"], history)
        if answers:
            out.earlier[e["id"]] = answers
    return out


def outputs_from_command(command: str, timeout: float = 120.0) -> Outputs:
    """The command run once per turn: the example as JSON on stdin (``input``: this
    turn's user message; ``history``: the conversation so far), the answer on stdout."""

    def ask(e: dict[str, Any], text: str, history: list[dict[str, str]]) -> str:
        app_input = {k: e.get(k) for k in ("id", "route", "system", "context")}
        app_input.update(input=text, unit=e.get("unit", "call"), history=history)
        done = subprocess.run(
            command, shell=True, input=orjson.dumps(app_input), capture_output=True,
            timeout=timeout, check=False,
        )  # fmt: skip
        return done.stdout.decode(errors="replace").strip() if done.returncode == 0 else ""

    return lambda examples: replay(examples, ask)


def outputs_from_endpoint(base_url: str, model: str, api_key: str = "offline") -> Outputs:
    """Chat completions: the system message, the conversation so far, this turn."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=2)

    def ask(e: dict[str, Any], text: str, history: list[dict[str, str]]) -> str:
        messages = [{"role": "system", "content": e["system"]}] if e.get("system") else []
        messages += [*history, {"role": "user", "content": text}]
        resp = client.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
        return resp.choices[0].message.content or ""

    return lambda examples: replay(examples, ask)


# --- scoring ----------------------------------------------------------------------------


def _trace(e: dict[str, Any], output: str) -> Trace:
    return Trace(
        trace_id=e["id"], route=e["route"], output_text=output, input_text=e["input"],
        system_text=e.get("system") or "", reference_answer=e.get("reference_answer"),
        documents=[Document(str(d["id"]), str(d["content"])) for d in e.get("context") or ()],
        source="offline",
    )  # fmt: skip


def _request(e: dict[str, Any], t: Trace, rubric: str, earlier: list[str]) -> JudgeRequest:
    """What the judge sees: the call, or the whole replayed conversation or agent task."""
    unit = e.get("unit", "call")
    if rubric in RUBRICS or unit == "call":
        return JudgeRequest(
            trace_id=t.trace_id, route=t.route, output=t.output_text, input=t.input_text,
            system=t.system_text, documents=tuple(t.documents), reference_answer=t.reference_answer,
        )  # fmt: skip
    if unit == "session":
        said = [*(x["input"] for x in e.get("turns") or ()), t.input_text]
        answers = [*earlier, t.output_text]
        turns = [Turn(t.trace_id, float(i), t.route, user_text=q, answer=a)
                 for i, (q, a) in enumerate(zip(said, answers, strict=False))]  # fmt: skip
        entries = bounded(session_entries(turns))[0]
    else:
        run = AgentRun(t.trace_id, t.route, "", 0.0, 0.0, steps=1, tool_steps=0,
                       task=t.input_text, final_answer=t.output_text)  # fmt: skip
        entries = bounded(run_entries(run))[0]
    return JudgeRequest(
        trace_id=t.trace_id, route=t.route, output=t.output_text, input=t.input_text,
        unit=unit, entries=tuple(entries),
    )  # fmt: skip


async def _judge(
    settings: Settings, items: list[tuple[str, JudgeRequest, str]]
) -> dict[tuple[str, str], Any]:
    from stream_eval.judge.client import JudgeClient

    client = JudgeClient.from_settings(settings.judge)
    out: dict[tuple[str, str], Any] = {}

    async def one(eid: str, req: JudgeRequest, rubric_name: str) -> None:
        rubric = ALL_RUBRICS[rubric_name]
        if not rubric.applies(req):
            return
        outcome = await client.call(client.prepare(rubric, req))
        out[(eid, rubric_name)] = outcome.verdict

    await asyncio.gather(*(one(*it) for it in items))
    return out


def _recorded(e: dict[str, Any]) -> list[str]:
    """A conversation's earlier answers as production gave them (outputs without a replay)."""
    return [x.get("output") or "" for x in e.get("turns") or ()]


def evaluate(
    examples: Sequence[dict[str, Any]], outputs: dict[str, str], settings: Settings, judge: bool
) -> list[ExampleResult]:
    traces = [_trace(e, outputs.get(e["id"], "")) for e in examples]
    checks = run_checks(traces, settings.checks_for)
    verdicts: dict[tuple[str, str], Any] = {}
    earlier = getattr(outputs, "earlier", {})
    if judge:
        items = [
            (e["id"], _request(e, t, r, earlier.get(e["id"], _recorded(e))), r)
            for e, t in zip(examples, traces, strict=True)
            for r in e.get("rubrics") or ()
        ]
        verdicts = asyncio.run(_judge(settings, items))
    results = []
    for e, t, rs in zip(examples, traces, checks, strict=True):
        failures: list[str] = []
        if e["id"] not in outputs or not t.output_text.strip():
            failures.append("no output")
        low = t.output_text.lower()
        failures += [f"missing {s!r}" for s in e.get("must_contain") or () if s.lower() not in low]
        failures += [f"contains {s!r}" for s in e.get("must_not_contain") or () if s.lower() in low]
        outcome = {r.check: r.passed for r in rs}
        for check, expected in (e.get("expected_checks") or {}).items():
            if check in outcome and outcome[check] != expected:
                failures.append(f"check {check} {'failed' if expected else 'passed'}")
        scores = {}
        for rubric_name in e.get("rubrics") or ():
            v = verdicts.get((e["id"], rubric_name))
            if v is None:
                continue
            scores[rubric_name] = v.score
            if not ALL_RUBRICS[rubric_name].passed(v.score):
                failures.append(f"judge {rubric_name} {v.score:g}")
        results.append(
            ExampleResult(e["id"], e["route"], not failures, failures, [r.check for r in rs],
                          [r.check for r in rs if not r.passed], scores)
        )  # fmt: skip
    return results


# --- runs, stored and compared ------------------------------------------------------------


def previous_from_store(store: Store, dataset: str) -> dict[str, bool] | None:
    db = store.database
    rows = store.query(
        f"SELECT run_id FROM {db}.offline_results WHERE dataset = {sql_str(dataset)} "
        f"GROUP BY run_id ORDER BY max(ran_at) DESC LIMIT 1"
    )
    if not rows:
        return None
    results = store.query(
        f"SELECT example_id, passed FROM {db}.offline_results FINAL "
        f"WHERE run_id = {sql_str(rows[0]['run_id'])}"
    )
    return {r["example_id"]: bool(r["passed"]) for r in results}


def previous_from_report(path: Path) -> dict[str, bool]:
    report = orjson.loads(path.read_bytes())
    return {r["example_id"]: bool(r["passed"]) for r in report["results"]}


def run(
    examples: Sequence[dict[str, Any]],
    outputs: Outputs,
    settings: Settings,
    *,
    dataset: str,
    dataset_version: int,
    judge: bool,
    previous: dict[str, bool] | None,
    store: Store | None = None,
) -> RunSummary:
    results = evaluate(examples, outputs(examples), settings, judge)
    run_id = uuid.uuid4().hex[:12]
    before = previous or {}
    summary = RunSummary(
        run_id=run_id, dataset=dataset, dataset_version=dataset_version,
        examples=len(results), passed=sum(r.passed for r in results),
        previous_pass_rate=(sum(before.values()) / len(before)) if before else None,
        newly_failing=[r.example_id for r in results if before.get(r.example_id) and not r.passed],
        newly_passing=[r.example_id for r in results
                       if r.example_id in before and not before[r.example_id] and r.passed],
        results=results,
    )  # fmt: skip
    if store is not None:
        now = time.time()
        rows = [
            {
                "run_id": run_id, "dataset": dataset, "dataset_version": dataset_version,
                "example_id": r.example_id, "route": r.route, "passed": int(r.passed),
                "failures": r.failures, "checks": r.checks, "failed_checks": r.failed_checks,
                "judge_json": orjson.dumps(r.judge).decode(), "source": "offline", "ran_at": now,
            }
            for r in results
        ]  # fmt: skip
        if rows:
            store.insert("offline_results", ndjson(rows))
    return summary


def report(summary: RunSummary) -> bytes:
    body = asdict(summary)
    body["pass_rate"] = summary.pass_rate
    return orjson.dumps(body, option=orjson.OPT_INDENT_2)
