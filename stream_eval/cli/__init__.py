"""The ``stream-eval`` command line: the group (``group``) and its commands, one module
per kind of work (``running``, ``reading``, ``review``, ``golden``, ``grafana``, ``demo``,
``privacy``)."""

from __future__ import annotations

from stream_eval.cli import demo, golden, grafana, privacy, reading, review, running  # noqa: F401
from stream_eval.cli.group import cli

__all__ = ["cli", "main"]


def main() -> None:
    cli(obj={})
