"""``stream-eval judge compare``: two judges on the traffic already judged, and a gate."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import click
import orjson

from stream_eval.cli.group import cli, settings_for, store_for


@cli.group()
def judge() -> None:
    """The LLM judge: compare two judges (model or model@rubric-version) on past traffic."""


def _plain(value: Any) -> Any:
    """A comparison as JSON values: an interval as value/lower/upper, an undefined statistic
    as its reason."""
    from stream_eval.review.agreement import Undefined

    if isinstance(value, Undefined):
        return {"undefined": value.reason}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, dict) and "undefined" in x:
        return f"undefined ({x['undefined']})"
    if isinstance(x, dict) and "value" in x:
        return f"{x['value']:.3f} [{x['lower']:.3f}, {x['upper']:.3f}]"
    return str(x)


@judge.command("compare")
@click.argument("a")
@click.argument("b")
@click.option("--rubric", default="helpfulness", show_default=True)
@click.option("--days", default=7.0, show_default=True, help="the range: this many days back")
@click.option("--top", default=10, show_default=True, help="items they disagree on most")
@click.option("--max-agreement-drop", type=float, help="gate: B's kappa at most this below A's")
@click.option("--max-shift", type=float, help="gate: |mean score shift| at most this")
@click.option(
    "--queue",
    "queue_n",
    default=0,
    show_default=True,
    help="put this many of the items furthest apart in the review queue",
)
@click.option("--json", "as_json", is_flag=True, help="the report as JSON on stdout")
@click.pass_context
def judge_compare(
    ctx: click.Context,
    a: str,
    b: str,
    rubric: str,
    days: float,
    top: int,
    max_agreement_drop: float | None,
    max_shift: float | None,
    queue_n: int,
    as_json: bool,
) -> None:
    """Judge A against judge B on the items both scored, and both against the labels;
    exit 1 when B fails a gate."""
    from stream_eval.judge.compare import Judge, compare, queue_disagreements

    try:
        ja, jb = Judge.parse(a), Judge.parse(b)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    settings = settings_for(ctx)
    now = time.time()
    with store_for(settings) as store:
        report = compare(store, ja, jb, rubric, now - days * 86400, now, max(top, queue_n))
        queued = queue_disagreements(store, report, queue_n, now) if queue_n > 0 else 0
        report.disagreements = report.disagreements[:top]
    failed = report.gate(max_agreement_drop, max_shift)
    doc = {
        "a": str(ja), "b": str(jb), "rubric": rubric, "days": days,
        "slices": _plain(report.slices), "disagreements": report.disagreements, "queued": queued,
        "gate": {"max_agreement_drop": max_agreement_drop, "max_shift": max_shift,
                 "passed": not failed, "failed": failed},
    }  # fmt: skip
    if as_json:
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    else:
        for s in doc["slices"]:
            click.echo(f"{s['route'] or 'all routes'}:")
            for name in (str(ja), str(jb)):
                ag = s["agreement"].get(name)
                kappa = ag.get("kappa") if isinstance(ag, dict) and "kappa" in ag else ag
                click.echo(f"  {name}: kappa {_fmt(kappa)}, pass rate {_fmt(s['sli'].get(name))}")
            sh = s["shift"]
            click.echo(f"  shift B-A on {sh['n']} items: {_fmt(sh['mean'])}; flips "
                       f"{sh['a_only_pass']} A-only / {sh['b_only_pass']} B-only pass, "
                       f"McNemar p {_fmt(sh['mcnemar_p'])}")  # fmt: skip
        for d in report.disagreements:
            click.echo(f"  apart: {d['trace_id']}/{d['span_id'] or '-'} ({d['route']}): "
                       f"{d['score_a']:g} vs {d['score_b']:g}")  # fmt: skip
        if queue_n > 0:
            click.echo(f"queued for review: {queued} (reason judge_disagreement)")
        for why in failed:
            click.echo(f"gate failed: {why}")
    if failed:
        ctx.exit(1)


def range_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--since, --until and --hours: a past range of the judge-requests topic (``_bounds``)."""
    f = click.option(
        "--hours", default=24.0, show_default=True, help="without --since: this many hours back"
    )(f)
    f = click.option("--until", help="the range's end (ISO-8601); default: now")(f)
    return click.option(
        "--since", help="the range's start (ISO-8601, UTC unless it says); default: --hours back"
    )(f)


def _bounds(since: str | None, until: str | None, hours: float) -> tuple[float, float]:
    end = _when(until, time.time())
    return _when(since, end - hours * 3600), end


def _when(text: str | None, default: float) -> float:
    """An ISO-8601 time (a date, or a date and time; UTC unless it says) as unix seconds."""
    from datetime import UTC, datetime

    if text is None:
        return default
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 time: {text!r}") from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


@judge.command("shadow")
@click.argument("model")
@range_options
@click.option("--base-url", help="the candidate's endpoint (default: the live judge's)")
@click.option(
    "--requests-per-minute", type=int, help="the candidate's rate limit (default: the live judge's)"
)
@click.option(
    "--budget-usd", type=float, required=True, help="the most this run spends; it stops there"
)
@click.option("--dry-run", is_flag=True, help="print the range and its estimate; call nothing")
@click.option(
    "--follow", is_flag=True,
    help="after the range, go on with --share of the live requests until stopped (SIGTERM, "
    "Ctrl-C); --budget-usd is then per UTC day",
)  # fmt: skip
@click.option("--share", default=1.0, show_default=True, help="with --follow: the live share")
@click.option("--json", "as_json", is_flag=True, help="the estimate and outcome as JSON on stdout")
@click.pass_context
def judge_shadow(
    ctx: click.Context, model: str, since: str | None, until: str | None, hours: float,
    base_url: str | None, requests_per_minute: int | None, budget_usd: float, dry_run: bool,
    follow: bool, share: float, as_json: bool,
) -> None:  # fmt: skip
    """A candidate judge MODEL scores the judge requests of a past range, by replay, into
    shadow_judge_results (never the live SLIs, alerts or review queue); compare it with
    `stream-eval judge compare LIVE shadow:MODEL`. The API key is the live judge's
    (STREAM_EVAL_JUDGE__API_KEY / OPENAI_API_KEY)."""
    import asyncio

    from stream_eval.judge.shadow import ShadowJudge, candidate_settings, range_of
    from stream_eval.sink.writer import SinkWriter

    if budget_usd < 0:
        raise click.BadParameter("--budget-usd must be 0 or more")
    if not 0 < share <= 1:
        raise click.BadParameter("--share must be in (0, 1]")
    settings = settings_for(ctx)
    start, end = _bounds(since, until, hours)
    cand = candidate_settings(settings, model, base_url, requests_per_minute)
    try:
        rng = range_of(cand, start, end)
    except Exception as exc:  # an empty range, no topic, no broker
        raise click.ClickException(f"the range could not be read: {exc}") from None
    # one event loop for every phase: the judge's HTTP client is bound to the loop it ran on
    with store_for(settings) as store, asyncio.Runner() as loop:
        writer = SinkWriter(store)
        try:
            shadow = ShadowJudge(cand, writer, budget_usd)
            err = click.get_text_stream("stderr")
            click.echo(f"range: {rng.messages:,} judge requests on {rng.topic} "
                       f"({', '.join(f'p{s.partition} {s.start}-{s.end}' for s in rng.spans)})",
                       file=err)  # fmt: skip
            est = loop.run(shadow.estimate(rng))
            click.echo(
                f"estimate: {est.items:,} (request, rubric) items, {est.already:,} already "
                f"scored by {model}, {est.to_judge:,} to judge: about {est.input_tokens:,} "
                f"input tokens, at most {est.max_output_tokens:,} output tokens, at most "
                f"${est.cost_usd:.4f} (budget ${budget_usd:.4f})",
                file=err,
            )
            doc: dict[str, Any] = {"model": model, "since": start, "until": end,
                                   "messages": rng.messages, "estimate": _plain(est)}  # fmt: skip
            if not dry_run and est.to_judge:

                def progress(o: Any) -> None:
                    click.echo(f"  {o.scored + o.failed:,} of {est.to_judge:,} judged, "
                               f"${o.cost_usd:.4f} spent", file=err)  # fmt: skip

                out = loop.run(shadow.run(rng, est, progress))
                doc["outcome"] = _plain(out)
                click.echo(
                    f"done: {out.scored:,} scored, {out.failed:,} failed, {out.calls:,} calls, "
                    f"${out.cost_usd:.4f}"
                    + (f"; budget reached, stopped at {out.stopped_at}" if out.budget_reached
                       else ""),
                    file=err,
                )  # fmt: skip
            if follow and not dry_run:
                doc["followed"] = _plain(_follow(loop, shadow, rng, share, err))
        finally:
            writer.close(store=False)
    if as_json:
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


def _follow(loop: Any, shadow: Any, rng: Any, share: float, err: Any) -> Any:
    """The live tail until SIGTERM or Ctrl-C; what it judged."""
    import signal
    import threading

    stop = threading.Event()
    before = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    click.echo(f"following {share:.0%} of the live requests (SIGTERM or Ctrl-C stops)", file=err)

    def progress(o: Any) -> None:
        click.echo(f"  live: {o.scored + o.failed:,} judged, ${o.cost_usd:.4f} spent", file=err)

    try:
        return loop.run(shadow.follow(rng, share, stop, progress))
    except KeyboardInterrupt:
        stop.set()
        return None
    finally:
        signal.signal(signal.SIGTERM, before)


@judge.group("canary")
def canary() -> None:
    """The drift canary: a fixed set of judge requests re-scored by the live judge."""


@canary.command("build")
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
@click.option("--size", default=50, show_default=True, help="requests in the set")
@range_options
@click.pass_context
def canary_build(
    ctx: click.Context, path: str, size: int, since: str | None, until: str | None, hours: float
) -> None:
    """Write the canary set to PATH: SIZE judge requests of a past range, as the live judge
    received them (one JSON request per line); prints its version."""
    from pathlib import Path

    from stream_eval.judge.canary import build
    from stream_eval.judge.shadow import range_of

    settings = settings_for(ctx)
    start, end = _bounds(since, until, hours)
    try:
        n, version = build(settings, range_of(settings, start, end), size, Path(path))
    except Exception as exc:  # an empty range, no topic, no broker
        raise click.ClickException(f"the canary set could not be built: {exc}") from None
    if n == 0:
        raise click.ClickException("no judge requests in the range: nothing to build from")
    click.echo(f"canary set {path}: {n} requests, version {version}")


@canary.command("run")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--budget-usd", type=float, required=True, help="refuse a run that may cost more")
@click.option("--baseline-runs", default=5, show_default=True, help="earlier runs compared with")
@click.option("--min-shift", default=0.5, show_default=True, help="score points a drift moves")
@click.option("--alpha", default=0.01, show_default=True, help="McNemar p-value below which")
@click.option("--json", "as_json", is_flag=True, help="the run as JSON on stdout")
@click.pass_context
def canary_run(
    ctx: click.Context, path: str, budget_usd: float, baseline_runs: int, min_shift: float,
    alpha: float, as_json: bool,
) -> None:  # fmt: skip
    """Score the canary set at PATH with the live judge and decide, per rubric, whether its
    scores drifted from the runs before; exit 1 on a drift (run it on a schedule)."""
    import asyncio
    from pathlib import Path

    from stream_eval.judge.canary import run_canary

    settings = settings_for(ctx)
    with store_for(settings) as store:
        try:
            steps = run_canary(
                settings, store, Path(path), budget_usd, baseline_runs, min_shift, alpha
            )
            run = asyncio.run(steps)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(orjson.dumps(_plain(run), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(f"canary {run.set_version} run {run.run_id}: {run.scored} scored, "
                   f"{run.failed} failed, ${run.cost_usd:.4f}")  # fmt: skip
        for d in run.decisions:
            verdict = "DRIFT" if d.drift else ("baseline" if not d.baseline_runs else "steady")
            click.echo(f"  {d.rubric}: {verdict}; shift {d.mean_shift:+.2f} on {d.items} items "
                       f"({d.up} up, {d.down} down, p {_fmt(d.p_value)}) against "
                       f"{d.baseline_runs} runs")  # fmt: skip
    if any(d.drift for d in run.decisions):
        ctx.exit(1)
