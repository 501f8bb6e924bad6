"""The ``stream-eval`` command line: the group (``group``) and its commands, one module
per kind of work (``running``, ``reading``, ``review``, ``golden``, ``grafana``, ``demo``,
``privacy``, ``judge``)."""

from __future__ import annotations

from stream_eval.cli import (  # noqa: F401
    demo,
    golden,
    grafana,
    judge,
    privacy,
    reading,
    review,
    running,
)
from stream_eval.cli.group import cli

__all__ = ["cli", "main"]


def main() -> None:
    cli(obj={})
