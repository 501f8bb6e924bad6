"""``stream-eval erase``: every record of a user, a session or a trace removed and recorded."""

from __future__ import annotations

import getpass
from pathlib import Path

import click

from stream_eval.cli.group import cli, settings_for, store_for


@cli.command("erase")
@click.option("--user-id", help="every trace, run, session and feedback of this user")
@click.option("--session-id", help="a conversation and its traces")
@click.option("--trace-id", help="one trace")
@click.option("--by", help="who asks for it, recorded in `erasures` (default: the OS user)")
@click.option(
    "--golden", "golden_dirs", multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="a golden dataset directory: write its next version without the erased examples",
)  # fmt: skip
@click.pass_context
def erase_command(
    ctx: click.Context,
    user_id: str | None,
    session_id: str | None,
    trace_id: str | None,
    by: str | None,
    golden_dirs: tuple[Path, ...],
) -> None:
    """Remove every record of a user, a session or a trace from every table (idempotent)."""
    from stream_eval.golden import drop_erased
    from stream_eval.privacy.erase import Kind, erase

    options: list[tuple[Kind, str | None]] = [
        ("user_id", user_id), ("session_id", session_id), ("trace_id", trace_id),
    ]  # fmt: skip
    given = [(k, v) for k, v in options if v is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --user-id, --session-id, --trace-id")
    (kind, value), who = given[0], by if by is not None else getpass.getuser()
    settings = settings_for(ctx)
    with store_for(settings) as store:
        try:
            erased = erase(store, kind, value, who)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(
            f"erased {kind} (by {who}): {len(erased.trace_ids)} traces, "
            f"{len(erased.session_ids)} sessions"
        )
        for table, n in erased.removed.items():
            click.echo(f"  {table}: {n}")
        for directory in golden_dirs:
            path = drop_erased(store, directory)
            click.echo(f"  {directory}: " + (f"wrote {path}" if path else "nothing to remove"))
