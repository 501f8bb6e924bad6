"""Commands that run or feed the stream: ``worker``, ``topics``, ``broker``, ``lag``,
``publish-synthetic``."""

from __future__ import annotations

import sys

import click

from stream_eval.cli.group import cli, settings_for
from stream_eval.tables import Column, Format, Table, emit, format_option


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
    from stream_eval import malloc
    from stream_eval.app import create_app
    from stream_eval.runtime.shutdown import BoundedWorker
    from stream_eval.runtime.topics import ensure_topics

    malloc.tune()
    settings = settings_for(ctx)
    ensure_topics(settings)
    app = create_app(settings, role)  # type: ignore[arg-type]
    grace = settings.kafka.shutdown_grace_seconds
    BoundedWorker(app, grace=grace, loglevel=loglevel, quiet=True).execute_from_commandline()


@cli.command()
@click.pass_context
def topics(ctx: click.Context) -> None:
    """Create the topics stream-eval reads and writes (idempotent)."""
    from stream_eval.runtime.topics import ensure_topics, topic_names

    settings = settings_for(ctx)
    created = ensure_topics(settings)
    for name in topic_names(settings):
        click.echo(f"{name}: {'created' if name in created else 'exists'}")


@cli.command()
@click.argument("action", type=click.Choice(["start", "stop", "status", "reset", "fetch"]))
def broker(action: str) -> None:
    """Manage the local single-node Kafka broker (deploy/kafka/kafka.sh)."""
    from stream_eval.runtime.broker import broker as run_broker

    sys.exit(run_broker(action, check=False))


@cli.command()
@format_option
@click.pass_context
def lag(ctx: click.Context, fmt: Format) -> None:
    """Consumer lag: messages not yet processed, per topic and consumer group."""
    from stream_eval.runtime.lag import consumed, group_lag

    settings = settings_for(ctx)
    table = Table("lag", [Column("consumer group"), Column("topic"), Column("lag", "{:,}", True)])
    for group, topic in consumed(settings):
        table.add(group, topic, group_lag(settings, topic, group=group))
    emit([table], fmt)


@cli.command("publish-synthetic")
@click.option("--traces", "n", default=10_000, show_default=True)
@click.option("--batch-size", default=100, show_default=True, help="traces per Kafka message")
@click.option("--seed", default=7, show_default=True)
@click.option("--no-bad", is_flag=True, help="leave out the malformed messages")
@click.pass_context
def publish_synthetic(ctx: click.Context, n: int, batch_size: int, seed: int, no_bad: bool) -> None:
    """Publish a realistic synthetic mix (every format, some bad input) to the traces topic."""
    from stream_eval.runtime.topics import ensure_topics
    from stream_eval.synthetic.mix import build_mix
    from stream_eval.synthetic.publish import publish

    settings = settings_for(ctx)
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
