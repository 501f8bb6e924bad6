"""``stream-eval grafana``: the dashboards and alert rules generated from the settings."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from stream_eval.cli.group import cli


@cli.group()
def grafana() -> None:
    """Grafana dashboards and alert rules, generated as code into grafana/."""


@grafana.command("generate")
@click.option("--check", is_flag=True, help="exit 1 if the committed files are not up to date")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(__file__).resolve().parents[2],
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
