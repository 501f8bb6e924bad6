"""The headers of a revision: a trace the assembly emits again with content that came after
it (``assembly.revise``), which the ingest reads to judge only the calls new in it.

Written here, where they are read: the ingest's input format, like the trace schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

H_REVISION = "stream-eval-revision"  # n: the nth revision of the trace
H_REVISES = "stream-eval-revises"  # "<partition>/<offset>" of the emission it replaces
# The span ids of the calls whose content the emission it replaces had already (comma-
# separated): evaluated then, with their judge requests; not judged again.
H_EVALUATED = "stream-eval-evaluated-spans"


def revision_headers(
    revision: int, partition: int, offset: int, evaluated: Iterable[str]
) -> list[tuple[str, bytes]]:
    return [
        (H_REVISION, str(revision).encode()),
        (H_REVISES, f"{partition}/{offset}".encode()),
        (H_EVALUATED, ",".join(sorted(evaluated)).encode()),
    ]


def evaluated_before(headers: Mapping[str, bytes]) -> frozenset[str]:
    """The calls of a revision that were evaluated from an earlier emission (none for a
    trace emitted the first time)."""
    value = headers.get(H_EVALUATED)
    if not value:
        return frozenset()
    return frozenset(value.decode(errors="replace").split(","))
