"""Every SLI, and every counter behind one, defined once.

A **counter** is an aggregate over the rows of one source table (the traces, their check
results, the feedback joined to them, the judge results, the sessions and their turns),
and a column of its **grain**'s exact per-minute view and closed-window table:

- the slice grain, ``sli_minute`` and ``sli_windows``, one row per minute (window) x
  route x model_version x prompt_version: every counter but the judge's;
- the judge grain, ``judge_sli_minute`` and ``judge_sli_windows``, the same keys and the
  judge's own, judge_model x judge_model_version x rubric_versions: the judge's counters.
  A change of judge (its model, the version its provider served, the version of a rubric
  the route is judged on) starts new rows, so no judge SLI ever mixes two judges.

An **SLI** is a ratio of sums of counters of one grain, so it re-aggregates exactly over
any window or slice (and, for a judge SLI, within one judge).

Generated from these definitions, and written nowhere else:

- the counter columns of the views and the window tables, and the migrations that add a
  new counter to a store created before it (``schema_placeholders``, for ``sink/*.sql``);
- the window closer's aggregates (``stream_eval.windows.sql``);
- the Grafana panels, stat panels, slices table and alert rules (``stream_eval.grafana``);
- the CLI's SLI table (``stream_eval.slis``).

So a new cheap check (one entry in ``stream_eval.checks.CHECKS``: its name and its
function) gets its two counters, its failure-rate SLI and its panel
with no other edit; wording, an overview place or an alert for it is one entry in
``_CHECK_SLIS``. A new SLI over existing counters is one entry in ``SLIS``; one that alerts
also names its threshold in ``AlertSettings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stream_eval.checks import CHECKS
from stream_eval.config import AlertSettings
from stream_eval.estimates import (
    JUDGE_PASS,
    JUDGE_SCORE,
    RUN_JUDGE_PASS,
    SESSION_JUDGE_PASS,
    UNIT_WEIGHTED_TERMS,
    WEIGHTED_TERMS,
    EstimateSql,
)
from stream_eval.feedback_events import KINDS as FEEDBACK_KINDS
from stream_eval.rubrics import UNIT_RUBRICS
from stream_eval.unit_ids import Unit

Source = Literal["traces", "checks", "feedback", "judge", "sessions", "turns"]

SLICE_KEYS: tuple[str, ...] = ("route", "model_version", "prompt_version")
# What a judge is, for its SLIs: the configured model, the version the provider served
# (empty on a failed call) and the versions of the rubrics the unit's route is judged on
# (``judge.stage.rubric_versions``).
JUDGE_KEYS: tuple[str, ...] = ("judge_model", "judge_model_version", "rubric_versions")


@dataclass(frozen=True, slots=True)
class Grain:
    """Where counters live: their per-minute view and closed-window table, with the keys
    of their rows, and the sources they count."""

    minute: str
    windows: str
    keys: tuple[str, ...]
    sources: tuple[Source, ...]


SLICE_GRAIN = Grain(
    "sli_minute", "sli_windows", SLICE_KEYS, ("traces", "checks", "feedback", "sessions", "turns")
)
JUDGE_GRAIN = Grain("judge_sli_minute", "judge_sli_windows", SLICE_KEYS + JUDGE_KEYS, ("judge",))
Section = Literal["checks", "feedback", "judge", "sessions"]
# The dashboard rows of the sections, in their order.
SECTIONS: dict[Section, str] = {
    "checks": "Cheap checks", "feedback": "User feedback", "judge": "LLM judge",
    "sessions": "Sessions",
}  # fmt: skip

# --- counters ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counter:
    """A counter column: rows of ``source`` that meet ``cond`` counted, or ``summed`` summed
    over them."""

    name: str
    source: Source
    cond: str = ""  # empty: every row of the source
    summed: str = ""  # empty: count the rows
    type: str = "UInt64"

    @property
    def grain(self) -> Grain:
        return JUDGE_GRAIN if self.source in JUDGE_GRAIN.sources else SLICE_GRAIN

    def sql(self, on_time: str = "") -> str:
        """The aggregate, over the source's rows; ``on_time``: a further condition (the
        window closer counts only what its window held when it closed)."""
        cond = " AND ".join(c for c in (on_time, self.cond) if c)
        if self.summed:
            return f"sumIf({self.summed}, {cond})" if cond else f"sum({self.summed})"
        return f"countIf({cond})" if cond else "count()"


def feedback_column(kind: str) -> str:
    """The counter of a feedback kind (``edit`` is counted as ``edits``)."""
    return "edits" if kind == "edit" else kind


def _check_counters(checks: tuple[str, ...]) -> tuple[Counter, ...]:
    per_check = tuple(
        c
        for name in checks
        for c in (
            Counter(f"{name}_fail", "checks", f"check_name = '{name}' AND passed = 0"),
            Counter(f"{name}_n", "checks", f"check_name = '{name}'"),
        )
    )
    return (*per_check, Counter("check_fail", "checks", "passed = 0"), Counter("check_n", "checks"))


_SCORED = "status = 'scored' AND unit = 'call'"  # call-level judge SLIs: calls only


def _unit_scored(unit: str) -> str:
    return f"status = 'scored' AND unit = '{unit}'"


_W, _S, _P = (
    "if(sample_prob > 0, 1 / sample_prob, 1)",  # 1/p; results of older versions: 1
    "toFloat64(assumeNotNull(score))",
    "toFloat64(assumeNotNull(passed))",
)

COUNTERS: tuple[Counter, ...] = (
    Counter("traces", "traces"),
    Counter("input_tokens", "traces", summed="ifNull(input_tokens, 0)"),
    Counter("output_tokens", "traces", summed="ifNull(output_tokens, 0)"),
    Counter("cost_usd", "traces", summed="ifNull(cost_usd, 0)", type="Float64"),
    *_check_counters(tuple(CHECKS)),
    *(Counter(feedback_column(k), "feedback", f"kind = '{k}'") for k in FEEDBACK_KINDS),
    Counter("feedback_n", "feedback"),
    Counter("judge_scored", "judge", _SCORED),
    Counter("judge_score_sum", "judge", _SCORED, "assumeNotNull(score)", "Float64"),
    Counter("judge_passed", "judge", f"{_SCORED} AND passed = 1"),
    Counter("judge_failed", "judge", "status = 'failed'"),  # every unit
    Counter("judge_cost_usd", "judge", summed="cost_usd", type="Float64"),  # every unit
    # the weighted sums behind the judge estimates (stream_eval.estimates)
    *(
        Counter(name, "judge", _SCORED, term.format(w=_W, s=_S, p=_P), "Float64")
        for name, term in WEIGHTED_TERMS.items()
    ),
    # and behind the whole units' pass rates, in the minute and slice of a session's last
    # turn or a run's last LLM call
    *(
        Counter(f"{unit}_judge_{k}", "judge", _unit_scored(unit), t.format(w=_W, p=_P), "Float64")
        for unit in ("session", "run")
        for k, t in UNIT_WEIGHTED_TERMS.items()
    ),
    # closed sessions, in the minute of their last turn, sliced by its dimensions
    Counter("sessions", "sessions"),
    Counter("session_turns", "sessions", summed="turns"),
    Counter("sessions_abandoned", "sessions", "abandoned = 1"),
    Counter("sessions_abandoned_after_failure", "sessions", "abandoned_after_failure = 1"),
    Counter("sessions_escalated", "sessions", "escalated = 1"),
    Counter("session_duration_s", "sessions", summed="duration_s", type="Float64"),
    # the turns of closed sessions, each in its own minute and slice (session_turns)
    Counter("turns", "turns"),
    Counter("turns_after_first", "turns", "turn_index > 1"),
    Counter("turn_rephrases", "turns", "rephrase = 1"),
    Counter("turns_failed", "turns", "failed = 1"),
    Counter("turns_failed_last", "turns", "failed = 1 AND last"),
    Counter("turns_escalated", "turns", "escalated = 1"),
)


def counters_in(grain: Grain) -> tuple[Counter, ...]:
    return tuple(c for c in COUNTERS if c.grain == grain)


def names_of(grain: Grain) -> tuple[str, ...]:
    """The counter columns of a grain's view and window table."""
    return tuple(c.name for c in counters_in(grain))


COUNTER_NAMES = names_of(SLICE_GRAIN)  # of sli_minute and sli_windows
JUDGE_COUNTER_NAMES = names_of(JUDGE_GRAIN)  # of judge_sli_minute and judge_sli_windows


def late_name(counter: str) -> str:
    """The column of ``sli_windows`` that counts what reached a window after it closed, for
    one counter (``traces`` -> ``late_traces``)."""
    return f"late_{counter}"


# Every counter's late counterpart: for each closed window and row, counter + its late
# counterpart = its grain's minute view summed over the window.
LATE_COUNTER_NAMES: tuple[str, ...] = tuple(late_name(n) for n in COUNTER_NAMES)
JUDGE_LATE_COUNTER_NAMES: tuple[str, ...] = tuple(late_name(n) for n in JUDGE_COUNTER_NAMES)


def counters_of(source: Source) -> tuple[Counter, ...]:
    return tuple(c for c in COUNTERS if c.source == source)


def aggregates_sql(source: Source, on_time: str = "", indent: str = "           ") -> str:
    """``<aggregate> AS <name>`` for each counter of ``source``, comma-separated."""
    return f",\n{indent}".join(f"{c.sql(on_time)} AS {c.name}" for c in counters_of(source))


def late_aggregates_sql(source: Source, late: str, indent: str = "           ") -> str:
    """``<aggregate> AS late_<name>`` for each counter of ``source``: its rows that meet
    ``late`` (what reached a window after it closed)."""
    return f",\n{indent}".join(f"{c.sql(late)} AS {late_name(c.name)}" for c in counters_of(source))


# The subquery alias each source has in sli_minute and in the window closer's SQL.
ALIASES: dict[Source, str] = {
    "traces": "t", "checks": "c", "feedback": "f", "judge": "j", "sessions": "s", "turns": "u",
}  # fmt: skip


def select_sql(indent: str = "    ", late: bool = False) -> str:
    """``<alias>.<name> AS <name>`` for every counter of the slice grain: the outer SELECT
    over the subqueries (``late``: their late counterparts too)."""
    names = [(c.source, c.name) for c in counters_in(SLICE_GRAIN)]
    if late:
        names += [(src, late_name(n)) for src, n in list(names)]
    return f",\n{indent}".join(f"{ALIASES[src]}.{n} AS {n}" for src, n in names)


def _ddl(grain: Grain, late: bool = False) -> str:
    return ",\n    ".join(
        f"{late_name(c.name) if late else c.name} {c.type}" for c in counters_in(grain)
    )


def _migrations(grain: Grain) -> str:
    """A store created before a counter existed gets it (inserts name their columns)."""
    return f"ALTER TABLE {{db}}.{grain.windows} " + ", ".join(
        f"ADD COLUMN IF NOT EXISTS {n} {c.type}"
        for c in counters_in(grain)
        for n in (c.name, late_name(c.name))
    )


def schema_placeholders() -> dict[str, str]:
    """What ``sink/*.sql`` spell as ``{sli_*}``."""
    return {
        "{sli_trace_counters}": aggregates_sql("traces"),
        "{sli_check_counters}": aggregates_sql("checks"),
        "{sli_feedback_counters}": aggregates_sql("feedback"),
        "{sli_judge_counters}": aggregates_sql("judge"),
        "{sli_session_counters}": aggregates_sql("sessions"),
        "{sli_turn_counters}": aggregates_sql("turns"),
        "{sli_counter_select}": select_sql(),
        "{sli_counter_ddl}": _ddl(SLICE_GRAIN),
        "{sli_late_counter_ddl}": _ddl(SLICE_GRAIN, late=True),
        "{sli_counter_migrations}": _migrations(SLICE_GRAIN),
        "{judge_counter_ddl}": _ddl(JUDGE_GRAIN),
        "{judge_late_counter_ddl}": _ddl(JUDGE_GRAIN, late=True),
        "{judge_counter_migrations}": _migrations(JUDGE_GRAIN),
    }


# --- SLIs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert rule on an SLI, per slice: its threshold is the ``AlertSettings`` field
    ``setting``; a ``*_max`` setting fires above it, a ``*_min`` one below."""

    setting: str
    severity: Literal["page", "ticket"]

    @property
    def op(self) -> Literal["gt", "lt"]:
        return "gt" if self.setting.endswith("_max") else "lt"

    def threshold(self, alerts: AlertSettings) -> float:
        return float(getattr(alerts, self.setting))


@dataclass(frozen=True, slots=True)
class Sli:
    """A ratio SLI over ``sli_minute`` rows: ``numerator / denominator`` per window and
    slice (each a sum of counters)."""

    key: str
    title: str  # panel title
    short: str  # CLI column
    numerator: str
    denominator: str
    section: Section  # the dashboard row it is drawn in
    description: str = ""
    unit: str = "percentunit"  # Grafana unit; percentunit: a share, shown as a percentage
    decimals: int = 1  # in the CLI
    summary: bool = False  # in the overview (stat panel, slices table) and the CLI table
    alert: Alert | None = None
    estimate: EstimateSql | None = None  # a judge SLI: an estimate with an interval

    @property
    def grain(self) -> Grain:
        """A judge SLI is read per judge (``JUDGE_GRAIN``), every other per slice."""
        return JUDGE_GRAIN if self.section == "judge" else SLICE_GRAIN

    @property
    def value(self) -> str:
        num = f"({self.numerator})" if " " in self.numerator else self.numerator
        return f"{num} / nullIf({self.denominator}, 0)"


def _fail_rate(check: str, title: str, short: str, what: str, **kw: object) -> Sli:
    return Sli(
        f"{check}_rate",
        title,
        short,
        f"sum({check}_fail)",
        f"sum({check}_n)",
        "checks",
        description=f"Share of the LLM calls the {check} check applies to that {what}.",
        **kw,  # type: ignore[arg-type]
    )


# How the SLI of each check reads; a check not listed gets ``_fail_rate``'s defaults.
_CHECK_SLIS: dict[str, Sli] = {
    s.key: s
    for s in (
        _fail_rate(
            "refusal", "Refusal rate", "refusal", "are refusals", summary=True,
            alert=Alert("refusal_rate_max", "page"),
        ),
        Sli(
            "grounding_rate",
            "Grounding rate",
            "grounded",
            "sum(grounding_n) - sum(grounding_fail)",
            "sum(grounding_n)",
            "checks",
            description="Share of RAG calls whose output is supported by the retrieved "
            "documents (the grounding check passed).",
            summary=True,
            alert=Alert("grounding_rate_min", "ticket"),
        ),
        _fail_rate(
            "pii", "PII rate", "PII", "contain PII", decimals=2, summary=True,
            alert=Alert("pii_rate_max", "page"),
        ),
        _fail_rate(
            "empty_output", "Empty-output rate", "empty", "have an empty output",
            alert=Alert("empty_output_rate_max", "page"),
        ),
        _fail_rate("size", "Size failure rate", "size fail", "exceed a size limit"),
        _fail_rate("json", "JSON failure rate", "JSON fail", "should be JSON but do not parse"),
    )
}  # fmt: skip


def _session_sli(
    key: str, title: str, short: str, num: str, den: str, what: str, **kw: object
) -> Sli:
    return Sli(key, title, short, f"sum({num})", f"sum({den})", "sessions", description=what, **kw)  # type: ignore[arg-type]


# docs/platform/sessions.md defines each signal; sessions count when they close (the gap
# after their last turn), in the minute of their last turn.
_SESSION_SLIS: tuple[Sli, ...] = (
    _session_sli(
        "rephrase_rate", "Rephrase rate (turns)", "rephrase", "turn_rephrases",
        "turns_after_first", "Share of the turns after a session's first that restate the "
        "turn before: the answer before did not serve.", summary=True,
    ),
    _session_sli(
        "left_after_failure_rate", "Left after a failed answer (turns)", "left after fail",
        "turns_failed_last", "turns_failed", "Share of the failed answers (a check or run "
        "check failed) after which the user said nothing more: the session ended there.",
    ),
    _session_sli(
        "turn_escalation_rate", "Escalation rate (turns)", "escalated turns",
        "turns_escalated", "turns", "Share of the turns that escalated (sessions."
        "escalation_routes, escalation_tools, escalation_pattern).",
    ),
    _session_sli(
        "abandonment_rate", "Abandonment rate (sessions)", "abandoned", "sessions_abandoned",
        "sessions", "Share of the sessions that ended while the user was unserved: the last "
        "answer failed, or the last turn was a rephrase.", summary=True,
    ),
    _session_sli(
        "abandonment_after_failure_rate", "Abandonment after failure (sessions)",
        "abandoned after fail", "sessions_abandoned_after_failure", "sessions",
        "Share of the sessions whose last answer failed a check.",
    ),
    _session_sli(
        "session_escalation_rate", "Escalation rate (sessions)", "escalated",
        "sessions_escalated", "sessions", "Share of the sessions with an escalated turn.",
    ),
    _session_sli(
        "turns_per_session", "Turns per session", "turns/session", "session_turns", "sessions",
        "Mean turns of the sessions that closed.", unit="none",
    ),
    _session_sli(
        "session_duration", "Time to the last turn", "session s", "session_duration_s",
        "sessions", "Mean time from a session's first turn to its last.", unit="s", decimals=0,
    ),
)  # fmt: skip


def _unit_judge_sli(e: EstimateSql, unit: Unit, what: str, plural: str) -> Sli:
    """A whole unit's judge pass rate (its own rubrics, its own sample and weights)."""
    return Sli(
        e.key,
        f"{what} pass rate (judge estimate, 95% interval)",
        f"{unit} judge pass",
        f"sum({e.prefix}_w_passed)",
        f"sum({e.prefix}_w)",
        "judge",
        description=f"The share of ({plural}, rubric) pairs at or above the rubric's "
        f"pass threshold on the {unit} rubrics ({', '.join(UNIT_RUBRICS[unit])}), estimated "
        f"from the judged {plural} weighted by 1 / their sampling probability, with its "
        "Wilson interval (lower, upper).",
        estimate=e,
    )


def _check_sli(check: str) -> Sli:
    return _CHECK_SLIS.get(f"{check}_rate") or _fail_rate(
        check, f"{check} failure rate", f"{check} fail", "fail it"
    )


SLIS: dict[str, Sli] = {
    s.key: s
    for s in (
        *(_check_sli(c) for c in CHECKS),
        Sli(
            "check_failure_rate",
            "Check-failure rate (all checks)",
            "check fail",
            "sum(check_fail)",
            "sum(check_n)",
            "checks",
            description="Failed check results over all check results (every check, every "
            "call it applies to).",
            summary=True,
            alert=Alert("check_failure_rate_max", "ticket"),
        ),
        Sli(
            "thumbs_down_rate",
            "Thumbs-down rate",
            "thumbs-down",
            "sum(thumbs_down)",
            "sum(traces)",
            "feedback",
            description="Thumbs-down feedback per LLM call, counted in the window of the call "
            "it is about (late feedback fills in past windows).",
            summary=True,
            alert=Alert("thumbs_down_rate_max", "ticket"),
        ),
        Sli(
            "regenerate_rate",
            "Regenerate rate",
            "regenerate",
            "sum(regenerate)",
            "sum(traces)",
            "feedback",
            description="Regenerate events per LLM call, in the window of the call.",
            summary=True,
        ),
        Sli(
            "judge_mean_score",
            "Judge mean score (estimate, 95% interval)",
            "judge mean",
            "sum(judge_w_score)",
            "sum(judge_w)",
            "judge",
            unit="none",
            decimals=2,
            description="The traffic's mean LLM-judge score, all call rubrics, estimated from "
            "the judged sample weighted by 1 / its sampling probability (failed-check "
            "calls are always judged, so a plain mean over the sample is biased); with "
            "its 95% interval (lower, upper). See README, judge estimates.",
            summary=True,
            estimate=JUDGE_SCORE,
        ),
        Sli(
            "judge_pass_rate",
            "Judge pass rate (estimate, 95% interval)",
            "judge pass",
            "sum(judge_w_passed)",
            "sum(judge_w)",
            "judge",
            description="The traffic's share of (call, rubric) pairs at or above the "
            "rubric's pass threshold, estimated from the judged sample weighted by 1 / "
            "its sampling probability, with its Wilson interval at the effective sample "
            "size (lower, upper).",
            summary=True,
            alert=Alert("judge_pass_rate_min", "ticket"),
            estimate=JUDGE_PASS,
        ),
        _unit_judge_sli(SESSION_JUDGE_PASS, "session", "Conversation", "closed sessions"),
        _unit_judge_sli(RUN_JUDGE_PASS, "run", "Agent-run", "agent runs"),
        *_SESSION_SLIS,
    )
}


def in_section(section: Section) -> tuple[Sli, ...]:
    return tuple(s for s in SLIS.values() if s.section == section)


def summary_slis() -> tuple[Sli, ...]:
    return tuple(s for s in SLIS.values() if s.summary)


def alerting_slis() -> tuple[Sli, ...]:
    return tuple(s for s in SLIS.values() if s.alert is not None)
