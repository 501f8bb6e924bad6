"""Bare Faust consume: an agent that only decodes each message with orjson and counts it.

Run by bench/run.py as a child process: python bench/faust_bare.py BROKER TOPIC N APP_ID
Prints one JSON line: {"messages": n, "seconds": first->last message}.
"""

from __future__ import annotations

import os
import sys
import time

import faust
import orjson

broker, topic_name, expected, app_id = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
app = faust.App(
    app_id,
    broker=f"kafka://{broker}",
    value_serializer="raw",
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
    topic_partitions=1,
)
topic = app.topic(topic_name, value_type=bytes)
state = {"n": 0, "first": 0.0}


@app.agent(topic)
async def bare(stream: faust.StreamT[bytes]) -> None:
    async for value in stream:
        orjson.loads(value)
        state["n"] += 1
        if state["n"] == 1:
            state["first"] = time.perf_counter()
        if state["n"] == expected:
            elapsed = time.perf_counter() - state["first"]
            print(orjson.dumps({"messages": expected, "seconds": elapsed}).decode(), flush=True)
            os._exit(0)


if __name__ == "__main__":
    faust.Worker(
        app, loglevel="error", quiet=True, redirect_stdouts=False
    ).execute_from_commandline()
