"""The `stream-eval` command line."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from stream_eval.config import Settings, load_settings
from stream_eval.sink.store import Store

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "demo.toml"


@contextmanager
def _store(settings: Settings) -> Iterator[Store]:
    """The configured store, closed on every path; a store error becomes a clean CLI error."""
    from stream_eval.sink.store import StoreError, open_store

    try:
        store = open_store(settings.clickhouse)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield store
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


def _settings(ctx: click.Context) -> Settings:
    try:
        settings: Settings = load_settings(ctx.obj.get("config"))
    except Exception as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from None
    return settings


@click.group()
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    help="TOML config file (also: STREAM_EVAL_CONFIG). Environment variables override it.",
)
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """stream-eval: online evaluation of LLM traces from Kafka."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config
    if config:
        os.environ["STREAM_EVAL_CONFIG"] = str(Path(config).resolve())


@cli.command()
@click.option(
    "--loglevel", default="info", type=click.Choice(["crit", "error", "warn", "info", "debug"])
)
@click.option(
    "--role",
    default="all",
    show_default=True,
    type=click.Choice(["all", "ingest", "judge"]),
    help="which agents to run; judge workers use the consumer group <app_id>-judge",
)
@click.pass_context
def worker(ctx: click.Context, loglevel: str, role: str) -> None:
    """Run a stream-eval Faust worker (ingest and judge agents) until stopped."""
    import faust

    from stream_eval.app import create_app
    from stream_eval.topics import ensure_topics

    settings = _settings(ctx)
    ensure_topics(settings)
    app = create_app(settings, role)  # type: ignore[arg-type]
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()


@cli.command()
@click.pass_context
def topics(ctx: click.Context) -> None:
    """Create the topics stream-eval reads and writes (idempotent)."""
    from stream_eval.topics import ensure_topics, topic_names

    settings = _settings(ctx)
    created = ensure_topics(settings)
    for name in topic_names(settings):
        click.echo(f"{name}: {'created' if name in created else 'exists'}")


@cli.command()
@click.argument("action", type=click.Choice(["start", "stop", "status", "reset", "fetch"]))
def broker(action: str) -> None:
    """Manage the local single-node Kafka broker (deploy/kafka/kafka.sh)."""
    from stream_eval.broker import broker as run_broker

    sys.exit(run_broker(action, check=False))


@cli.command()
@click.argument("query")
@click.option(
    "--format",
    "fmt",
    default="PrettyCompactMonoBlock",
    show_default=True,
    help="Any ClickHouse output format: CSV, JSONEachRow, TSVWithNames...",
)
@click.pass_context
def sql(ctx: click.Context, query: str, fmt: str) -> None:
    """Run SQL against the configured ClickHouse store (embedded chdb by default)."""
    with _store(_settings(ctx)) as store:
        out = store.raw(query, fmt)
    sys.stdout.buffer.write(out)


@cli.command()
@click.pass_context
def summary(ctx: click.Context) -> None:
    """Print the per-route summary from ClickHouse."""
    _print_summary(_settings(ctx))


def _print_summary(settings: Settings) -> None:
    from rich.console import Console

    from stream_eval.checks import CHECK_NAMES
    from stream_eval.summary import (
        read_judge_summary,
        read_summary,
        render_judge_summary,
        render_summary,
    )

    with _store(settings) as store:
        s = read_summary(store)
        judged = read_judge_summary(store)
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)  # a log or a pipe: do not squeeze the table into 80
    console.print(render_summary(s, list(CHECK_NAMES)))
    if judged:
        console.print(render_judge_summary(judged))
    elif not settings.judge.active:
        console.print(
            "Judging is disabled: no judge endpoint or API key is configured, so the sampled "
            f"traces wait in the topic {settings.topics.judge_requests} (nothing is scored, "
            "nothing is made up). Set STREAM_EVAL_JUDGE__BASE_URL (any OpenAI-compatible "
            "endpoint) and/or OPENAI_API_KEY, and the judge agent scores them."
        )


@cli.command()
@click.option(
    "--minutes", default=60, show_default=True, help="the window, ending at the newest data"
)
@click.option("--by-slice", is_flag=True, help="per route x model version x prompt version")
@click.pass_context
def slis(ctx: click.Context, minutes: int, by_slice: bool) -> None:
    """Current quality SLIs per route, from the sli_minute view."""
    from rich.console import Console

    from stream_eval.slis import current_slis, render

    with _store(_settings(ctx)) as store:
        newest, rows = current_slis(store, minutes, by_slice)
    console = Console()
    if not console.is_terminal:
        console = Console(width=180)
    title = f"stream-eval SLIs: the {minutes} minutes up to {newest} (UTC)"
    console.print(render(rows, by_slice, title))


@cli.group()
def grafana() -> None:
    """Grafana dashboards and alert rules, generated as code into grafana/."""


@grafana.command("generate")
@click.option("--check", is_flag=True, help="exit 1 if the committed files are not up to date")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(__file__).resolve().parent.parent,
    show_default="the source checkout",
)
def grafana_generate(check: bool, root: Path) -> None:
    """Write grafana/ from deploy/stream-eval.toml (the thresholds of the alert rules)."""
    from stream_eval.grafana.generate import check as check_files
    from stream_eval.grafana.generate import committed_settings, write

    settings = committed_settings(root)
    if check:
        stale = check_files(root, settings)
        for path in stale:
            click.echo(f"out of date: {path}")
        sys.exit(1 if stale else 0)
    for written in write(root, settings):
        click.echo(f"wrote {written}")


@cli.command()
@click.pass_context
def lag(ctx: click.Context) -> None:
    """Consumer lag: messages not yet processed, per topic and consumer group."""
    from stream_eval.lag import group_lag

    settings = _settings(ctx)
    t = settings.topics
    rows = [
        (settings.app_id, t.traces),
        (settings.app_id, t.judge_requests),
        (f"{settings.app_id}-judge", t.judge_requests),
    ]
    for group, topic in rows:
        click.echo(f"{group:40} {topic:45} {group_lag(settings, topic, group=group):>10,}")


@cli.command("publish-synthetic")
@click.option("--traces", "n", default=10_000, show_default=True)
@click.option("--batch-size", default=100, show_default=True, help="traces per Kafka message")
@click.option("--seed", default=7, show_default=True)
@click.option("--no-bad", is_flag=True, help="leave out the malformed messages")
@click.pass_context
def publish_synthetic(ctx: click.Context, n: int, batch_size: int, seed: int, no_bad: bool) -> None:
    """Publish a realistic synthetic mix (every format, some bad input) to the traces topic."""
    from stream_eval.synthetic.mix import build_mix
    from stream_eval.synthetic.publish import publish
    from stream_eval.topics import ensure_topics

    settings = _settings(ctx)
    ensure_topics(settings)
    mix = build_mix(
        n,
        seed=seed,
        batch_size=batch_size,
        bad=not no_bad,
        max_message_bytes=settings.ingest.max_message_bytes,
    )
    sent = publish(settings, mix.messages)
    click.echo(f"published {sent} messages holding {n} traces to {settings.topics.traces}")


@cli.command()
@click.option("--traces", "n", default=20_000, show_default=True)
@click.option("--batch-size", default=100, show_default=True, help="traces per Kafka message")
@click.option("--timeout", default=600.0, show_default=True, help="seconds to wait for the drain")
@click.option("--keep", is_flag=True, help="keep earlier demo data instead of starting fresh")
@click.pass_context
def demo(ctx: click.Context, n: int, batch_size: int, timeout: float, keep: bool) -> None:
    """Start Kafka, publish synthetic traffic, run a worker until drained, print the summary.

    Uses deploy/demo.toml unless --config is given. The data stays in the embedded
    ClickHouse: query it afterwards with `stream-eval sql`.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from stream_eval.app import group_id
    from stream_eval.broker import broker as run_broker
    from stream_eval.runner import WorkerFailed, WorkerProcess
    from stream_eval.synthetic.feedback import feedback_messages
    from stream_eval.synthetic.mix import build_mix
    from stream_eval.synthetic.publish import publish
    from stream_eval.topics import ensure_topics, start_groups_at_end

    console = Console()
    if not ctx.obj.get("config"):
        os.environ["STREAM_EVAL_CONFIG"] = str(DEMO_CONFIG)
        ctx.obj["config"] = str(DEMO_CONFIG)
    settings = _settings(ctx)
    console.print("[bold]1/4[/] starting the local Kafka broker (first run fetches its jars)")
    run_broker("start")
    ensure_topics(settings)
    if not keep:  # a clean slate: a new store, and the workers read only this run's traffic
        shutil.rmtree(settings.clickhouse.path, ignore_errors=True)
        start_groups_at_end(settings, [group_id(settings, "all"), group_id(settings, "judge")])

    mix = build_mix(n, batch_size=batch_size, max_message_bytes=settings.ingest.max_message_bytes)
    console.print(
        f"[bold]2/4[/] publishing {len(mix.messages):,} Kafka messages holding "
        f"{n:,} synthetic traces (JSON, NDJSON, OTLP protobuf and JSON, bad input)"
    )
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
    ) as bar:
        task = bar.add_task("published", total=len(mix.messages))
        publish(settings, mix.messages, progress=lambda i: bar.update(task, completed=i))

    console.print("[bold]3/4[/] running a stream-eval worker until the topic is drained")
    log_path = Path(settings.clickhouse.path).parent / "demo-worker.log"
    w = WorkerProcess(ctx.obj["config"], log_path)
    started = time.monotonic()
    w.start(loglevel="warn")
    try:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
        ) as bar:
            total = len(mix.messages)
            task = bar.add_task("messages committed", total=total)
            w.wait_drained(
                settings,
                timeout=timeout,
                progress=lambda lag: bar.update(task, completed=total - lag),
            )
            # User feedback on about a fifth of the traces, once they are in.
            fb = feedback_messages(mix.expected.published)
            publish(settings, fb, topic=settings.topics.feedback)
            fb_task = bar.add_task(f"{len(fb):,} feedback events published, backlog", total=None)
            t = settings.topics
            w.wait_drained(
                settings,
                timeout=timeout,
                topics=[t.feedback],
                progress=lambda lag: bar.update(fb_task, completed=lag),
            )
            if settings.judge.active:
                judge_task = bar.add_task("judge backlog (messages)", total=None)
                w.wait_drained(
                    settings,
                    timeout=timeout,
                    topics=[settings.topics.judge_requests],
                    progress=lambda lag: bar.update(judge_task, completed=lag),
                )
    except WorkerFailed as exc:
        w.stop()
        raise click.ClickException(str(exc)) from None
    elapsed = time.monotonic() - started
    w.stop()
    console.print(f"    drained in {elapsed:.1f}s (worker start-up included); log: {log_path}")
    console.print("[bold]4/4[/] summary, read back from the embedded ClickHouse")
    _print_summary(settings)
    from stream_eval.slis import current_slis, render

    with _store(settings) as store:
        newest, rows = current_slis(store, 24 * 60, by_slice=False)
    wide = Console(width=180) if not console.is_terminal else console
    wide.print(render(rows, False, f"quality SLIs of the demo traffic (up to {newest} UTC)"))
    console.print(
        f"Query it: stream-eval --config {ctx.obj['config']} sql "
        '"SELECT route, count() FROM stream_eval.traces FINAL GROUP BY route"'
    )


def main() -> None:
    cli(obj={})
