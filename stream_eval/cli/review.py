"""``stream-eval review``: the review app, label import, judge agreement, the enqueuer."""

from __future__ import annotations

from pathlib import Path

import click

from stream_eval.cli.group import cli, settings_for, store_for
from stream_eval.tables import Format, emit, format_option


@cli.group()
def review() -> None:
    """Human review: the queue in the browser, bulk label import."""


@review.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
@click.option("--no-kafka", is_flag=True, help="do not publish labels to the labels topic")
@click.pass_context
def review_serve(ctx: click.Context, host: str, port: int, no_kafka: bool) -> None:
    """Serve the review app (labels to ClickHouse and to the labels topic)."""
    import uvicorn

    from stream_eval.review.labels import kafka_publisher
    from stream_eval.review.web import create_app

    settings = settings_for(ctx)
    cfg = settings.review
    if cfg.auth == "password" and not cfg.users:
        raise click.ClickException(
            "no one can sign in: add review.users (each with the hash `stream-eval review "
            "hash-password` prints), or use review.auth = 'proxy'"
        )
    publish = None if no_kafka else kafka_publisher(settings)
    with store_for(settings) as store:
        click.echo(f"review app on http://{host}:{port}/ (Ctrl-C stops it)")
        uvicorn.run(create_app(settings, store, publish), host=host, port=port, log_level="warning")


@review.command("hash-password")
@click.password_option(help="asked for when not given (never echoed)")
def review_hash_password(password: str) -> None:
    """Print the scrypt hash of a password for review.users (the password is not kept)."""
    from stream_eval.review.auth import hash_password

    click.echo(hash_password(password))


@review.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--reviewer", help="for lines without a reviewer column")
@click.option("--format", "fmt", type=click.Choice(["auto", "csv", "jsonl"]), default="auto")
@click.option("--no-kafka", is_flag=True, help="do not publish labels to the labels topic")
@click.pass_context
def review_import(
    ctx: click.Context, path: Path, reviewer: str | None, fmt: str, no_kafka: bool
) -> None:
    """Append labels from a CSV (with a header) or JSONL file; all or nothing."""
    from stream_eval.review.labels import InvalidLabel, kafka_publisher, parse_labels, record

    settings = settings_for(ctx)
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() == ".csv" else "jsonl"
    try:
        labels = parse_labels(path.read_text(encoding="utf-8"), fmt, reviewer)
    except InvalidLabel as exc:
        raise click.ClickException(f"{path}: {exc}; nothing was imported") from None
    publish = None if no_kafka else kafka_publisher(settings)
    with store_for(settings) as store:
        n = record(store, labels, publish, settings.privacy_for)
    click.echo(f"imported {n} labels from {path}")


@review.command("agreement")
@click.option("--days", default=30.0, show_default=True, help="labels of the last N days")
@format_option
@click.pass_context
def review_agreement(ctx: click.Context, days: float, fmt: Format) -> None:
    """Judge vs human agreement per judge model and rubric version, with 95% intervals.

    A statistic the labels do not define prints as "undefined (<reason>)".
    """
    from stream_eval.review.agreement import labelled_pairs
    from stream_eval.review.report import (
        agreement_table,
        corrected_lines,
        corrected_rates,
        corrected_table,
    )

    with store_for(settings_for(ctx)) as store:
        groups = labelled_pairs(store, days)
        corrected = corrected_rates(store, days)
    table = agreement_table(groups, days)
    if fmt != "table":
        emit([table, corrected_table(corrected)], fmt)
        return
    emit([table], fmt)
    if groups:
        for line in corrected_lines(corrected):
            click.echo(line)


@review.command("enqueue")
@click.pass_context
def review_enqueue(ctx: click.Context) -> None:
    """Add what is due to the review queue now (the worker's leader does it on a timer)."""
    from stream_eval.review.queue import enqueue

    settings = settings_for(ctx)
    with store_for(settings) as store:
        click.echo(f"added {enqueue(store, settings.review)} items to the review queue")
