"""Shared fixtures. Integration tests use the real local Kafka broker (deploy/kafka/kafka.sh)."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_eval.config import ClickHouseSettings, Settings, TopicSettings
from stream_eval.runtime.broker import broker
from stream_eval.runtime.topics import delete_topics_with_prefix
from stream_eval.sink.store import Store, open_store
from stream_eval.sink.writer import SinkWriter
from stream_eval.testing import StubOpenAI

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = ROOT / "deploy" / "demo.toml"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the broker is marked ``kafka``, whether it asks for the
    ``kafka`` fixture itself or through another (``isolated``): the unit lane
    (``bash deploy/dev.sh unit``) deselects them with ``-m "not kafka"``."""
    for item in items:
        if "kafka" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


def _port_open(port: int = 9092) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """A running broker on 127.0.0.1:9092: started here if it is not running yet."""
    if not _port_open():
        broker("start")
    yield "127.0.0.1:9092"


@pytest.fixture()
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka: str) -> Iterator[Settings]:
    """Demo settings with topics, consumer group and chdb path unique to one test.

    Its topics (and Faust's changelog and leader topics of its app id) are deleted after the
    test, so the broker's state does not grow with every run of the suite."""
    run = uuid.uuid4().hex[:8]
    env = {
        "STREAM_EVAL_CONFIG": str(DEMO_CONFIG),
        "STREAM_EVAL_APP_ID": f"test-{run}",
        "STREAM_EVAL_CLICKHOUSE__PATH": str(tmp_path / "chdb"),
        "STREAM_EVAL_KAFKA__BOOTSTRAP_SERVERS": kafka,
    }
    for field in TopicSettings.model_fields:  # every topic, so no test reads another's
        env[f"STREAM_EVAL_TOPICS__{field.upper()}"] = f"test-{run}.{field}"
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = Settings()
    yield settings
    delete_topics_with_prefix(settings.kafka, f"test-{run}")


@pytest.fixture()
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The demo configuration alone: no STREAM_EVAL_* variable of the caller leaks in.

    test_grafana.py overrides it with its own module-scoped settings."""
    monkeypatch.setenv("STREAM_EVAL_CONFIG", str(DEMO_CONFIG))
    for key in list(os.environ):
        if key.startswith("STREAM_EVAL_") and key != "STREAM_EVAL_CONFIG":
            monkeypatch.delenv(key)
    return Settings()


OTEL_KINDS = ("openllmetry", "openinference", "openai_v2", "langchain")


@pytest.fixture(scope="session")
def otel_traffic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """OTLP made by the real instrumentations (tests/otel_app.py), once per session:
    instrumentation -> the folder with its export requests and expected.json."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("otel")
    out = {}
    for kind in OTEL_KINDS:
        out[kind] = root / kind
        subprocess.run(
            [sys.executable, str(ROOT / "tests" / "otel_app.py"), kind, str(out[kind])],
            check=True,
            timeout=180,
            capture_output=True,
        )
    return out


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    """An embedded store of the test's own (database ``stream_eval``); modules that need
    another scope or database define their own."""
    s = open_store(ClickHouseSettings(path=str(tmp_path / "chdb"), database="stream_eval"))
    try:
        yield s
    finally:
        s.close()


# The review app in a real browser (Debian's Chromium, installed by .ci/run).
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture()
def browser() -> Iterator[object]:
    if CHROMIUM is None:
        pytest.fail("Chromium is missing: apt-get install chromium (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def stub() -> Iterator[StubOpenAI]:
    """The local OpenAI-compatible server, as the judge's endpoint."""
    with StubOpenAI() as s:
        yield s


@pytest.fixture()
def writer(tmp_path: Path) -> Iterator[SinkWriter]:
    """A sink writer on a fresh embedded store."""
    w = SinkWriter(open_store(ClickHouseSettings(path=str(tmp_path / "chdb"))))
    yield w
    w.close()
