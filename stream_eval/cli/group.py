"""The ``stream-eval`` command group, and what its commands share: the settings (from
``--config`` and the environment) and the store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from stream_eval.config import Settings, load_settings
from stream_eval.sink.store import Store


@contextmanager
def store_for(settings: Settings) -> Iterator[Store]:
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


def settings_for(ctx: click.Context) -> Settings:
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
