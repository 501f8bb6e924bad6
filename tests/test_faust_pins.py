"""Faust's code that stream-eval patches, copies or overrides, pinned by a hash of its
upstream source: an upgrade that changes one of these fails here, saying what to
re-verify, instead of silently running a copy of code that is no longer Faust's.

The source is read from Faust's files (not from the live classes, which the patches
replace), so the pins hold whether or not the app was created first.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from pathlib import Path

import pytest

# (module, class, method) -> (sha256 of the method's source, what depends on it)
PINS: dict[tuple[str, str, str], tuple[str, str]] = {
    ("faust.transport.consumer", "Consumer", "_drain_messages"): (
        "8308d11bc7a290dc1e9a9c5509d459d13bdc332fdbd15accf9b1ce7e01b63599",
        "stream_eval.runtime.bulk_drain._drain is a copy of this loop with bulk delivery: carry "
        "the change over (read offsets, gaps, commit_every, stop and error handling)",
    ),
    ("faust.transport.consumer", "Consumer", "wait_empty"): (
        "f29971a4a89cf07e664c5007908daff6fe6f8cf2d563ffbaece6650d2ca99818",
        "stream_eval.runtime.faust_fixes wraps it (before_wait_empty hooks): check it still waits "
        "on _unacked_messages",
    ),
    ("faust.transport.consumer", "ThreadDelegateConsumer", "seek_to_committed"): (
        "7bc5dc7eb96c9b34cb33402122f9578a0b2aa5a869714c02a6163dbb5974d6b1",
        "stream_eval.runtime.faust_fixes wraps it on the aiokafka Consumer (stale committed "
        "offsets): check it still returns the committed offsets it sought to",
    ),
    ("faust.transport.drivers.aiokafka", "AIOKafkaConsumerThread", "seek_to_committed"): (
        "cfaf5d02cabe8bfc982ef8ca4f0a7d50bbaf57e0f9d7c3c607125d24c65b32f4",
        "stream_eval.runtime.faust_fixes wraps it (stale committed offsets): check it still "
        "returns "
        "the committed offsets it sought to",
    ),
    ("faust.tables.manager", "TableManager", "on_start"): (
        "5e67c90893df7194315c2f30aa6fae3848132626b74abeb038014729839d1838",
        "stream_eval.runtime.faust_fixes.TableManager.on_start repeats it without the sleep: carry "
        "the change over",
    ),
    ("faust.transport.consumer", "Consumer", "track_message"): (
        "fb914aa0a1e17de2abf04ea86a3e7f67c7e478b4bf638ada151ce444e38a4a92",
        "the ingest's intake tracks the messages it holds through it (bulk_drain): check "
        "wait_empty still waits on what it tracks",
    ),
}


def _source(module: str, cls: str, method: str) -> str:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    text = Path(spec.origin).read_text()
    for node in ast.parse(text).body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == method:
                    segment = ast.get_source_segment(text, item)
                    assert segment is not None
                    return segment
    raise AssertionError(f"{module}.{cls}.{method} is gone from Faust")


@pytest.mark.parametrize("key", list(PINS), ids=[".".join(k) for k in PINS])
def test_patched_faust_code_is_the_one_verified(key: tuple[str, str, str]) -> None:
    pinned, depends = PINS[key]
    digest = hashlib.sha256(_source(*key).encode()).hexdigest()
    assert digest == pinned, (
        f"{'.'.join(key)} changed upstream (sha256 {digest}): {depends}; then update the pin"
    )
