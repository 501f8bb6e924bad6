"""The command line, in-process through click's CliRunner (no Kafka needed for these commands).

chdb allows one open session per process, and CliRunner runs in this process: every test that
touches a store checks afterwards that no session was left open (``no_open_session``).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result
from helpers import nonempty

from stream_eval.cli import cli
from stream_eval.config import ClickHouseSettings, Settings
from stream_eval.ingest.process import process_batch
from stream_eval.records import RawMessage
from stream_eval.sink.store import open_store
from stream_eval.synthetic.mix import build_mix
from stream_eval.testing.ingest import write_batch

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "deploy" / "demo.toml"
COMMANDS = (
    "broker",
    "demo",
    "erase",
    "judge",
    "golden",
    "grafana",
    "lag",
    "offline",
    "publish-synthetic",
    "review",
    "slis",
    "sql",
    "summary",
    "topics",
    "worker",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STREAM_EVAL_* leaks in or out: the CLI writes STREAM_EVAL_CONFIG into os.environ."""
    monkeypatch.setenv("STREAM_EVAL_CONFIG", "")  # recorded, so restored after the test
    for key in list(os.environ):
        if key.startswith("STREAM_EVAL_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("COLUMNS", "200")  # rich: no truncated table cells


@pytest.fixture()
def chdb_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(tmp_path / "chdb")
    monkeypatch.setenv("STREAM_EVAL_CLICKHOUSE__PATH", path)
    return path


@pytest.fixture()
def no_open_session(tmp_path: Path) -> Iterator[None]:
    """After the test, a store at another path must open: the CLI closed its session."""
    yield
    gc.collect()  # a leaked session held only by garbage would close here
    s = open_store(ClickHouseSettings(path=str(tmp_path / "probe")), migrate=False)
    s.close()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj={})


# --------------------------------------------------------------------------- help


def test_help_lists_commands() -> None:
    r = invoke("--help")
    assert r.exit_code == 0, r.output
    listed = {
        line.split()[0] for line in r.output.split("Commands:")[1].splitlines() if line.strip()
    }
    assert listed == set(COMMANDS)
    assert "--config" in r.output


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command: str) -> None:
    r = invoke(command, "--help")
    assert r.exit_code == 0, r.output
    assert f"Usage: cli {command}" in r.output


def test_unknown_command() -> None:
    r = invoke("nope")
    assert r.exit_code == 2
    assert "No such command" in r.output


# --------------------------------------------------------------------------- sql


@pytest.mark.usefixtures("chdb_path", "no_open_session")
@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("CSV", "2\n"),
        ("CSVWithNames", '"x"\n2\n'),
        ("TSV", "2\n"),
        ("JSONEachRow", '{"x":2}\n'),
    ],
)
def test_sql_formats(fmt: str, expected: str) -> None:
    r = invoke("sql", "SELECT 1+1 AS x", "--format", fmt)
    assert r.exit_code == 0, r.output
    assert r.output == expected


@pytest.mark.usefixtures("no_open_session")
def test_sql_default_format_and_schema(chdb_path: str) -> None:
    r = invoke("sql", "SELECT name FROM system.tables WHERE database = 'stream_eval' ORDER BY name")
    assert r.exit_code == 0, r.output
    for table in ("traces", "check_results", "dead_letters", "ingest_messages", "traces_v"):
        assert table in r.output
    assert "┌" in r.output  # PrettyCompactMonoBlock
    assert Path(chdb_path).is_dir()  # the store was created where the environment said


@pytest.mark.usefixtures("no_open_session")
def test_sql_reads_written_data(chdb_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_EVAL_CONFIG", str(DEMO))
    mix = build_mix(40, batch_size=10)
    msgs = [RawMessage("t", 0, i, time.time() + i, m.value) for i, m in enumerate(mix.messages)]
    settings = Settings()
    assert settings.clickhouse.path == chdb_path  # the environment beats the demo file
    batch = process_batch(msgs, settings)
    store = open_store(settings.clickhouse)
    try:
        write_batch(store, batch, settings)
    finally:
        store.close()
    r = invoke(
        "sql",
        "SELECT route, count() AS n FROM stream_eval.traces_v GROUP BY route ORDER BY route",
        "--format",
        "JSONEachRow",
    )
    assert r.exit_code == 0, r.output
    got = {row["route"]: int(row["n"]) for row in map(orjson.loads, r.output.splitlines())}
    assert got == mix.expected.traces

    r = invoke("summary")
    assert r.exit_code == 0, r.output
    assert "per-route summary" in r.output
    for route in nonempty(mix.expected.traces):
        assert route in r.output
    assert f"Kafka messages accounted for: {mix.expected.messages}" in r.output


@pytest.mark.usefixtures("chdb_path", "no_open_session")
@pytest.mark.parametrize(
    ("query", "fmt"),
    [
        ("SELEC nope", "CSV"),
        ("SELECT * FROM stream_eval.no_such_table", "CSV"),
        ("SELECT 1", "NoSuchFormat"),
    ],
)
def test_sql_error_is_a_clear_message(query: str, fmt: str) -> None:
    r = invoke("sql", query, "--format", fmt)
    exit_code, output = r.exit_code, r.output
    del r
    assert exit_code == 1
    assert output.startswith("Error: ")
    assert "DB::Exception" in output
    assert "Traceback" not in output


def test_sql_error_closes_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_EVAL_CLICKHOUSE__PATH", str(tmp_path / "a"))
    bad = invoke("sql", "SELEC nope", "--format", "CSV")
    assert bad.exit_code == 1
    monkeypatch.setenv("STREAM_EVAL_CLICKHOUSE__PATH", str(tmp_path / "b"))
    good = invoke("sql", "SELECT 1", "--format", "CSV")
    good_exit, good_output = good.exit_code, good.output
    del bad, good
    gc.collect()  # release the leaked session before asserting, so later tests are unaffected
    assert good_exit == 0, good_output


# --------------------------------------------------------------------------- --config


@pytest.mark.usefixtures("no_open_session")
def test_config_file_is_used(tmp_path: Path) -> None:
    path = tmp_path / "store-from-config"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[clickhouse]\npath = "{path}"\ndatabase = "evals"\n')
    env_before = dict(os.environ)
    r = invoke(
        "--config", str(cfg), "sql", "SELECT currentDatabase() = 'default', 1", "--format", "CSV"
    )
    assert r.exit_code == 0, r.output
    assert r.output == "1,1\n"
    assert path.is_dir()
    r = invoke("--config", str(cfg), "sql", "SELECT count() FROM evals.traces_v", "--format", "CSV")
    assert (r.exit_code, r.output) == (0, "0\n")
    assert dict(os.environ) == env_before  # the file reached the command, not the environment


@pytest.mark.parametrize(
    "text",
    [
        "bogus = 1\n",
        '[kafka]\nbootstrap_server = "typo"\n',
        '[checks]\ndisabled = ["refusals"]\n',
        "[sampling]\ndefault_rate = 2\n",
        "this is not toml\n",
    ],
)
@pytest.mark.parametrize("command", ["sql", "summary"])
def test_invalid_config_exits_non_zero(tmp_path: Path, text: str, command: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    args = ["--config", str(cfg), command] + (["SELECT 1"] if command == "sql" else [])
    r = invoke(*args)
    assert r.exit_code == 1, r.output
    assert r.output.startswith("Error: invalid configuration:")
    assert "Traceback" not in r.output
    assert not (tmp_path / "chdb").exists()


def test_config_that_does_not_exist(tmp_path: Path) -> None:
    r = invoke("--config", str(tmp_path / "missing.toml"), "sql", "SELECT 1")
    assert r.exit_code == 2
    assert "does not exist" in r.output


def test_missing_config_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_EVAL_CONFIG", str(tmp_path / "gone.toml"))
    r = invoke("sql", "SELECT 1")
    assert r.exit_code == 1
    assert "invalid configuration" in r.output and "gone.toml" in r.output
