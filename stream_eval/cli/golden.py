"""``stream-eval golden`` (promotion, export) and ``stream-eval offline`` (the offline runner)."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

import click
import orjson

from stream_eval.cli.group import cli, settings_for, store_for


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

    settings = settings_for(ctx)
    with store_for(settings) as store:
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

    settings = settings_for(ctx)
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
    store_cm = nullcontext(None) if no_store else store_for(settings)
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
