"""``stream-eval demo``: the local broker, synthetic traffic, a worker until drained,
the summary."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

from stream_eval.cli.group import cli, settings_for, store_for
from stream_eval.cli.reading import print_summary
from stream_eval.tables import emit

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "demo.toml"


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
    from stream_eval.runner import WorkerFailed, WorkerProcess
    from stream_eval.runtime.broker import broker as run_broker
    from stream_eval.runtime.topics import ensure_topics, start_groups_at_end
    from stream_eval.synthetic.feedback import feedback_messages
    from stream_eval.synthetic.mix import build_mix
    from stream_eval.synthetic.publish import publish

    console = Console()
    if not ctx.obj.get("config"):
        ctx.obj["config"] = str(DEMO_CONFIG)
    settings = settings_for(ctx)
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
    # A one-shot run, stopped at the end: as a dynamic member it leaves its group when it
    # stops, so the next demo's reset of the group's offsets need not wait for it.
    dynamic = {"STREAM_EVAL_KAFKA__STATIC_MEMBERSHIP": "false"}
    w = WorkerProcess(ctx.obj["config"], log_path, dynamic)
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
    print_summary(settings)
    from stream_eval.slis import current_slis, sli_table

    with store_for(settings) as store:
        newest, rows = current_slis(store, 24 * 60, by_slice=False)
    emit(
        [sli_table(rows, False, f"quality SLIs of the demo traffic (up to {newest} UTC)")], "table"
    )
    console.print(
        f"Query it: stream-eval --config {ctx.obj['config']} sql "
        '"SELECT route, count() FROM stream_eval.traces FINAL GROUP BY route"'
    )
