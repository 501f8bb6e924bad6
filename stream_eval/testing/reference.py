"""The reference form of an ingest batch's rows: computed from a processed ``Batch`` in
one pass, the plain way. The worker does not write through it (it writes what
``ingest.prepare`` encoded, with the watermarks of ``IngestStage.finish``;
``testing.ingest`` runs that path without Kafka); tests hold the two to the same
bytes (``tests/test_prepare.py``), and the bench's peers, which are other engines doing
the same work, write it.
"""

from __future__ import annotations

from stream_eval.records import Batch
from stream_eval.sink.rows import (
    dead_rows,
    ingest_tables,
    ledger_rows,
    ndjson,
    run_rows,
    trace_row,
)


def reference_rows(batch: Batch, ingested_at: float, stage: str = "ingest") -> dict[str, bytes]:
    """JSONEachRow per table, in the order they must be written (``ingest_tables``), from
    a processed batch with the watermarks ``process_batch`` gave it."""
    progress = [{**r, "ingested_at": ingested_at} for r in batch.progress]
    return ingest_tables(
        ndjson([trace_row(p, ingested_at) for p in batch.processed]),
        ndjson(dead_rows(batch, ingested_at, stage)),
        ndjson(progress),
        ndjson(ledger_rows(batch, ingested_at)),
        ndjson(run_rows(batch, ingested_at)),
    )
