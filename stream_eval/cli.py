"""The `stream-eval` command line."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import click
import orjson

from stream_eval.config import Settings, load_settings
from stream_eval.sink.store import Store
from stream_eval.tables import Column, Format, Table, emit, format_option

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
    ctx.obj["config"] = str(Path(config).resolve()) if config else None


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
    settings = _settings(ctx)
    ensure_topics(settings)
    app = create_app(settings, role)  # type: ignore[arg-type]
    grace = settings.kafka.shutdown_grace_seconds
    BoundedWorker(app, grace=grace, loglevel=loglevel, quiet=True).execute_from_commandline()


@cli.command()
@click.pass_context
def topics(ctx: click.Context) -> None:
    """Create the topics stream-eval reads and writes (idempotent)."""
    from stream_eval.runtime.topics import ensure_topics, topic_names

    settings = _settings(ctx)
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
@format_option
@click.pass_context
def summary(ctx: click.Context, fmt: Format) -> None:
    """Print the per-route summary from ClickHouse."""
    _print_summary(_settings(ctx), fmt)


def _print_summary(settings: Settings, fmt: Format = "table") -> None:
    from stream_eval.checks import CHECKS
    from stream_eval.summary import (
        judge_table,
        read_judge_summary,
        read_summary,
        summary_table,
        totals_table,
    )

    with _store(settings) as store:
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

    with _store(_settings(ctx)) as store:
        newest, rows = current_slis(store, minutes, by_slice)
    title = f"stream-eval SLIs: the {minutes} minutes up to {newest} (UTC)"
    emit([sli_table(rows, by_slice, title)], fmt)


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

    settings = _settings(ctx)
    publish = None if no_kafka else kafka_publisher(settings)
    with _store(settings) as store:
        click.echo(f"review app on http://{host}:{port}/ (Ctrl-C stops it)")
        uvicorn.run(create_app(settings, store, publish), host=host, port=port, log_level="warning")


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

    settings = _settings(ctx)
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() == ".csv" else "jsonl"
    try:
        labels = parse_labels(path.read_text(encoding="utf-8"), fmt, reviewer)
    except InvalidLabel as exc:
        raise click.ClickException(f"{path}: {exc}; nothing was imported") from None
    publish = None if no_kafka else kafka_publisher(settings)
    with _store(settings) as store:
        n = record(store, labels, publish)
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

    with _store(_settings(ctx)) as store:
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

    settings = _settings(ctx)
    with _store(settings) as store:
        click.echo(f"added {enqueue(store, settings.review)} items to the review queue")


@cli.group()
def golden() -> None:
    """The golden dataset: reviewed production traces as versioned JSONL."""


@golden.command("promote")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--verdict", "verdicts", multiple=True, default=("fail",), show_default=True,
    type=click.Choice(["fail", "pass"]), help="newest label verdicts to promote",
)  # fmt: skip
@click.pass_context
def golden_promote(ctx: click.Context, directory: Path, verdicts: tuple[str, ...]) -> None:
    """Write the next version of the dataset in DIRECTORY with the newly reviewed traces."""
    from stream_eval.golden import promote

    settings = _settings(ctx)
    with _store(settings) as store:
        p = promote(store, directory, verdicts=verdicts)
    if p.path is None:
        click.echo(f"nothing new to promote ({p.already} already in the dataset, "
                   f"{p.no_reference} failures without a corrected answer)")  # fmt: skip
        return
    click.echo(f"wrote {p.path}: {p.added} new examples (version {p.version}); "
               f"{p.already} already in the dataset, {p.no_reference} failures without a "
               "corrected answer")  # fmt: skip


@golden.command("export")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--version", type=int, help="default: the newest")
def golden_export(directory: Path, version: int | None) -> None:
    """Print a version of the dataset (JSONL) on stdout."""
    from stream_eval.golden import InvalidExample, dataset_version, load, versions

    found = [p for p in versions(directory) if version is None or dataset_version(p) == version]
    if not found:
        raise click.ClickException(f"no such version in {directory}")
    try:
        examples = load(found[-1])
    except InvalidExample as exc:
        raise click.ClickException(str(exc)) from None
    for e in examples:
        click.echo(orjson.dumps(e).decode())


@cli.group()
def offline() -> None:
    """The offline runner: a golden dataset through the same checks and judge rubrics."""


@offline.command("run")
@click.argument("dataset", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--outputs", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSONL of {"id", "output"}')  # fmt: skip
@click.option("--command", help="run per example: the example as JSON on stdin, output on stdout")
@click.option("--endpoint", help="an OpenAI-compatible base URL to ask (with --model)")
@click.option("--model", default="app", show_default=True)
@click.option("--min-pass-rate", default=0.9, show_default=True, help="the gate: exit 1 below")
@click.option("--judge/--no-judge", default=None, help="default: when a judge is configured")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), help="write JSON")
@click.option(
    "--previous", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="a report of the run to compare with (default: the store's last run)",
)  # fmt: skip
@click.option("--no-store", is_flag=True, help="do not write results to ClickHouse")
@click.pass_context
def offline_run(
    ctx: click.Context, dataset: Path, outputs: Path | None, command: str | None,
    endpoint: str | None, model: str, min_pass_rate: float, judge: bool | None,
    report: Path | None, previous: Path | None, no_store: bool,
) -> None:  # fmt: skip
    """Score an app's outputs on DATASET (a version file); exit 1 under --min-pass-rate."""
    from stream_eval import offline as off
    from stream_eval.golden import InvalidExample, dataset_version, load

    settings = _settings(ctx)
    sources = [x for x in (outputs, command, endpoint) if x]
    if len(sources) != 1:
        raise click.UsageError("give exactly one of --outputs, --command, --endpoint")
    try:
        examples = load(dataset)
    except InvalidExample as exc:
        raise click.ClickException(str(exc)) from None
    if outputs:
        source = off.outputs_from_file(outputs)
    elif command:
        source = off.outputs_from_command(command)
    else:
        source = off.outputs_from_endpoint(str(endpoint), model)
    use_judge = settings.judge.active if judge is None else judge
    name = dataset.parent.name or dataset.stem
    store_cm = nullcontext(None) if no_store else _store(settings)
    with store_cm as store:
        before = off.previous_from_report(previous) if previous else (
            off.previous_from_store(store, name) if store is not None else None
        )  # fmt: skip
        summary = off.run(
            examples, source, settings, dataset=name, dataset_version=dataset_version(dataset),
            judge=use_judge, previous=before, store=store,
        )  # fmt: skip
    if report:
        report.write_bytes(off.report(summary))
    prev = (f" (previous {summary.previous_pass_rate:.1%})"
            if summary.previous_pass_rate is not None else "")  # fmt: skip
    rate = f"{summary.passed}/{summary.examples} passed = {summary.pass_rate:.1%}{prev}"
    click.echo(f"offline run {summary.run_id}: {name} v{summary.dataset_version}, {rate}")
    for eid in summary.newly_failing:
        click.echo(f"  newly failing: {eid}")
    for eid in summary.newly_passing:
        click.echo(f"  newly passing: {eid}")
    for r in summary.results:
        if not r.passed:
            click.echo(f"  FAIL {r.example_id} [{r.route}]: {'; '.join(r.failures)}")
    if summary.pass_rate < min_pass_rate:
        click.echo(f"gate: pass rate {summary.pass_rate:.1%} < {min_pass_rate:.1%}", err=True)
        sys.exit(1)


@cli.command()
@format_option
@click.pass_context
def lag(ctx: click.Context, fmt: Format) -> None:
    """Consumer lag: messages not yet processed, per topic and consumer group."""
    from stream_eval.runtime.lag import consumed, group_lag

    settings = _settings(ctx)
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
    from stream_eval.runner import WorkerFailed, WorkerProcess
    from stream_eval.runtime.broker import broker as run_broker
    from stream_eval.runtime.topics import ensure_topics, start_groups_at_end
    from stream_eval.synthetic.feedback import feedback_messages
    from stream_eval.synthetic.mix import build_mix
    from stream_eval.synthetic.publish import publish

    console = Console()
    if not ctx.obj.get("config"):
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
    _print_summary(settings)
    from stream_eval.slis import current_slis, sli_table

    with _store(settings) as store:
        newest, rows = current_slis(store, 24 * 60, by_slice=False)
    emit(
        [sli_table(rows, False, f"quality SLIs of the demo traffic (up to {newest} UTC)")], "table"
    )
    console.print(
        f"Query it: stream-eval --config {ctx.obj['config']} sql "
        '"SELECT route, count() FROM stream_eval.traces FINAL GROUP BY route"'
    )


def main() -> None:
    cli(obj={})
