"""Commands that read the store: ``sql``, ``summary``, ``slis``."""

from __future__ import annotations

import sys

import click

from stream_eval.cli.group import cli, settings_for, store_for
from stream_eval.config import Settings
from stream_eval.tables import Format, emit, format_option


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
    with store_for(settings_for(ctx)) as store:
        out = store.raw(query, fmt)
    sys.stdout.buffer.write(out)


@cli.command()
@format_option
@click.pass_context
def summary(ctx: click.Context, fmt: Format) -> None:
    """Print the per-route summary from ClickHouse."""
    print_summary(settings_for(ctx), fmt)


def print_summary(settings: Settings, fmt: Format = "table") -> None:
    from stream_eval.checks import CHECKS
    from stream_eval.summary import (
        judge_table,
        read_judge_summary,
        read_summary,
        summary_table,
        totals_table,
    )

    with store_for(settings) as store:
        s = read_summary(store)
        judged = read_judge_summary(store)
    nothing_judged = "No judge results yet."
    if not settings.judge.active:
        nothing_judged = (
            "Judging is disabled: no judge endpoint or API key is configured, so the sampled "
            f"traces wait in the topic {settings.topics.judge_requests} (nothing is scored, "
            "nothing is made up). Set STREAM_EVAL_JUDGE__BASE_URL (any OpenAI-compatible "
            "endpoint) and/or OPENAI_API_KEY, and the judge agent scores them."
        )
    tables = [summary_table(s, list(CHECKS)), judge_table(judged, nothing_judged)]
    if fmt != "table":  # the table's footer, as data
        tables.append(totals_table(s))
    emit(tables, fmt)


@cli.command()
@click.option(
    "--minutes", default=60, show_default=True, help="the window, ending at the newest data"
)
@click.option("--by-slice", is_flag=True, help="per route x model version x prompt version")
@format_option
@click.pass_context
def slis(ctx: click.Context, minutes: int, by_slice: bool, fmt: Format) -> None:
    """Current quality SLIs per route, from the sli_minute view."""
    from stream_eval.slis import current_slis, sli_table

    with store_for(settings_for(ctx)) as store:
        newest, rows = current_slis(store, minutes, by_slice)
    title = f"stream-eval SLIs: the {minutes} minutes up to {newest} (UTC)"
    emit([sli_table(rows, by_slice, title)], fmt)
