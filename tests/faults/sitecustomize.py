"""A fault for the tests, loaded into a worker process by PYTHONPATH (never by the product).

``STREAM_EVAL_TEST_DROP_FETCH=<topic>:<partition>``: the worker's Faust consumer drops
the first fetch that holds records of that partition, as Faust's ``getmany`` does
with a fetch it is iterating when a rebalance comes: aiokafka's position moves past
records that the stream never gets (see stream_eval/runtime/stall_watch.py).
"""

from __future__ import annotations

import os
from typing import Any

_SPEC = os.environ.get("STREAM_EVAL_TEST_DROP_FETCH", "")

if _SPEC:
    from faust.transport import consumer as _consumer

    _topic, _, _partition = _SPEC.rpartition(":")
    _original = _consumer.Consumer._wait_next_records
    _done: list[bool] = []

    async def _wait_next_records(self: Any, timeout: float) -> Any:
        records, active = await _original(self, timeout)
        if records and not _done:
            for tp in list(records):
                if tp.topic == _topic and tp.partition == int(_partition):
                    print(
                        f"test fault: dropped {len(records[tp])} fetched records of {_SPEC}",
                        flush=True,
                    )
                    del records[tp]
                    _done.append(True)
        return records, active

    _consumer.Consumer._wait_next_records = _wait_next_records  # type: ignore[method-assign]
