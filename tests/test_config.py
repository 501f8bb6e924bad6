"""Settings: defaults, the TOML file, STREAM_EVAL_* overrides, per-route resolution, validation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from stream_eval import checks
from stream_eval.config import (
    DEFAULT_REFUSAL_PHRASES,
    CheckSettings,
    RouteSettings,
    Settings,
    load_settings,
)
from stream_eval.privacy.patterns import PATTERNS, PII_KINDS

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "deploy" / "demo.toml"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STREAM_EVAL_* variable leaks in or out (load_settings writes STREAM_EVAL_CONFIG)."""
    monkeypatch.setenv("STREAM_EVAL_CONFIG", "")  # recorded, so restored after the test
    for key in list(os.environ):
        if key.startswith("STREAM_EVAL_"):
            monkeypatch.delenv(key)


def toml(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def use_file(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    monkeypatch.setenv("STREAM_EVAL_CONFIG", str(path))


# --------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    s = Settings()
    assert s.app_id == "stream-eval"
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.kafka.security_protocol == "PLAINTEXT"
    assert s.kafka.sasl_password is None
    assert s.topics.traces == "llm-traces"
    assert s.clickhouse.url == "" and s.clickhouse.database == "stream_eval"
    assert s.ingest.max_message_bytes == 8 * 1024 * 1024
    assert s.ingest.max_traces_per_message == 10_000
    assert s.ingest.format == "auto"
    assert s.checks.disabled == []
    assert s.checks.pii_kinds == list(PII_KINDS)
    assert s.checks.refusal_phrases == list(DEFAULT_REFUSAL_PHRASES)
    assert s.checks.max_output_chars == 20_000 and s.checks.expects_json is False
    assert s.sampling.default_rate == 0.05
    assert s.sampling.salt == ""
    assert s.sampling.always_on_failed == ["grounding", "pii"]
    assert s.routes == {}
    assert s.checks_for("anything") == s.checks
    assert s.sample_rate_for("anything") == 0.05


def test_default_lists_are_not_shared() -> None:
    a, b = Settings(), Settings()
    a.checks.pii_kinds.append("email")
    a.sampling.always_on_failed.clear()
    assert b.checks.pii_kinds == list(PII_KINDS)
    assert b.sampling.always_on_failed == ["grounding", "pii"]


def test_names_are_validated_against_their_owners() -> None:
    """The settings hold no list of names: a check, a PII kind or a rubric added to its
    registry is accepted at once, and a name no registry has is refused."""
    checks.CHECKS["toxicity_probe"] = checks.CHECKS["size"]
    try:
        s = Settings(checks={"disabled": ["toxicity_probe"]})
        assert s.checks.disabled == ["toxicity_probe"]
    finally:
        del checks.CHECKS["toxicity_probe"]
    with pytest.raises(ValidationError, match="unknown checks"):
        Settings(checks={"disabled": ["toxicity_probe"]})
    with pytest.raises(ValidationError, match=r"routes\.chat\.checks: unknown PII kinds"):
        Settings(routes={"chat": {"checks": {"pii_kinds": ["email", "shoe_size"]}}})
    assert tuple(PATTERNS) == PII_KINDS  # the default and the allowed kinds: the patterns'
    assert CheckSettings().pii_kinds == list(PATTERNS)
    with pytest.raises(ValidationError, match="unknown rubrics"):
        Settings(judge={"rubrics": ["helpfulness", "wit"]})


# --------------------------------------------------------------------------- file and env


FILE = """
app_id = "from-file"

[kafka]
bootstrap_servers = "file-broker:9092"
consumer_group = "file-group"

[sampling]
default_rate = 0.25
salt = "file-salt"

[checks]
max_output_chars = 500
disabled = ["refusal"]

[routes.rag]
sample_rate = 0.5
checks = { grounding_min_supported = 0.9, pii_kinds = ["email"] }

[routes.extract]
checks = { expects_json = true, disabled = [] }

[routes.off]
sample_rate = 0.0
"""


def test_toml_file_via_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_file(monkeypatch, toml(tmp_path, FILE))
    s = Settings()
    assert s.app_id == "from-file"
    assert s.kafka.bootstrap_servers == "file-broker:9092"
    assert s.kafka.consumer_group == "file-group"
    assert s.kafka.partitions == 4  # not in the file: the default
    assert s.sampling.default_rate == 0.25 and s.sampling.salt == "file-salt"
    assert s.checks.max_output_chars == 500
    assert set(s.routes) == {"rag", "extract", "off"}


def test_load_settings_with_path(tmp_path: Path) -> None:
    path = toml(tmp_path, FILE)
    s = load_settings(str(path))
    assert s.app_id == "from-file"


def test_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_file(monkeypatch, toml(tmp_path, FILE))
    monkeypatch.setenv("STREAM_EVAL_KAFKA__BOOTSTRAP_SERVERS", "env-broker:9093")
    monkeypatch.setenv("STREAM_EVAL_SAMPLING__DEFAULT_RATE", "0.75")
    s = Settings()
    assert s.kafka.bootstrap_servers == "env-broker:9093"
    assert s.sampling.default_rate == 0.75
    # The rest of each section still comes from the file (a deep merge, not a replacement).
    assert s.kafka.consumer_group == "file-group"
    assert s.sampling.salt == "file-salt"
    assert s.sample_rate_for("unknown-route") == 0.75
    assert s.sample_rate_for("rag") == 0.5  # a route's own rate still wins


def test_constructor_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_EVAL_APP_ID", "from-env")
    assert Settings().app_id == "from-env"
    assert Settings(app_id="from-args").app_id == "from-args"
    assert load_settings(app_id="from-args").app_id == "from-args"


def test_env_list_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_EVAL_SAMPLING__ALWAYS_ON_FAILED", '["pii"]')
    monkeypatch.setenv("STREAM_EVAL_CLICKHOUSE__PASSWORD", "hunter2")
    s = Settings()
    assert s.sampling.always_on_failed == ["pii"]
    assert s.clickhouse.password is not None
    assert s.clickhouse.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())


def test_env_invalid_value_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_EVAL_SAMPLING__DEFAULT_RATE", "1.5")
    with pytest.raises(ValidationError):
        Settings()


def test_missing_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.toml"
    use_file(monkeypatch, missing)
    with pytest.raises(FileNotFoundError, match=r"nope\.toml"):
        Settings()
    with pytest.raises(FileNotFoundError):
        load_settings(str(tmp_path / "also-missing.toml"))


def test_config_path_that_is_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_file(monkeypatch, tmp_path)
    with pytest.raises(FileNotFoundError):
        Settings()


# --------------------------------------------------------------------------- per route


def test_checks_for_merges_route_overrides_on_file_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_file(monkeypatch, toml(tmp_path, FILE))
    s = Settings()
    rag = s.checks_for("rag")
    assert rag.grounding_min_supported == 0.9
    assert rag.pii_kinds == ["email"]
    assert rag.max_output_chars == 500  # from [checks], not the built-in default
    assert rag.disabled == ["refusal"]
    extract = s.checks_for("extract")
    assert extract.expects_json is True
    assert extract.disabled == []  # a route can re-enable a globally disabled check
    assert extract.max_output_chars == 500
    assert s.checks_for("off") == s.checks  # a route with no check overrides
    assert s.checks_for("unknown") is s.checks
    assert s.checks.grounding_min_supported == 0.6  # the base is not changed by overrides


def test_sample_rate_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_file(monkeypatch, toml(tmp_path, FILE))
    s = Settings()
    assert s.sample_rate_for("rag") == 0.5
    assert s.sample_rate_for("extract") == 0.25  # route without a rate: the default
    assert s.sample_rate_for("off") == 0.0  # an explicit 0 is kept, not replaced
    assert s.sample_rate_for("unknown") == 0.25


def test_routes_from_constructor() -> None:
    s = Settings(
        routes={"a": RouteSettings(sample_rate=1.0, checks={"max_output_chars": 3})},
        checks=CheckSettings(max_input_chars=10),
    )
    assert s.sample_rate_for("a") == 1.0
    assert s.checks_for("a").max_output_chars == 3
    assert s.checks_for("a").max_input_chars == 10


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "text",
    [
        "bogus = 1\n",
        '[kafka]\nbootstrap_server = "typo:9092"\n',
        "[sampling]\nrate = 0.1\n",
        "[routes.chat]\nsampel_rate = 0.1\n",
        "[routes.chat]\nchecks = { max_output_char = 10 }\n",
        "[unknown_section]\nx = 1\n",
    ],
)
def test_unknown_keys_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    use_file(monkeypatch, toml(tmp_path, text))
    with pytest.raises(ValidationError):
        Settings()


def test_unknown_env_key_in_a_section_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_EVAL_KAFKA__BOOTSTRAP_SERVER", "typo:9092")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[checks]\ndisabled = ["refusals"]\n', "refusals"),
        ('[sampling]\nalways_on_failed = ["grounding", "toxicity"]\n', "toxicity"),
        ('[routes.chat]\nchecks = { disabled = ["jsn"] }\n', "jsn"),
        ('[checks]\npii_kinds = ["email", "ssn"]\n', "ssn"),
        ('[routes.chat]\nchecks = { pii_kinds = ["passport"] }\n', "passport"),
    ],
)
def test_unknown_names_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, match: str
) -> None:
    use_file(monkeypatch, toml(tmp_path, text))
    with pytest.raises(ValidationError, match=match):
        Settings()


@pytest.mark.parametrize(
    "text",
    [
        "[sampling]\ndefault_rate = 1.5\n",
        "[sampling]\ndefault_rate = -0.1\n",
        "[routes.chat]\nsample_rate = 2\n",
        "[routes.chat]\nchecks = { grounding_min_supported = 1.1 }\n",
        "[ingest]\nmax_message_bytes = 10\n",
        '[ingest]\nformat = "xml"\n',
        '[kafka]\nsecurity_protocol = "TLS"\n',
        "[kafka]\npartitions = 0\n",
    ],
)
def test_out_of_range_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    use_file(monkeypatch, toml(tmp_path, text))
    with pytest.raises(ValidationError):
        Settings()


def test_known_names_accepted() -> None:
    s = Settings(
        checks=CheckSettings(disabled=list(checks.CHECKS), pii_kinds=list(PII_KINDS)),
        sampling={"always_on_failed": list(checks.CHECKS)},
    )
    assert s.checks.disabled == list(checks.CHECKS)


# --------------------------------------------------------------------------- the demo file


def test_demo_toml_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    use_file(monkeypatch, DEMO)
    s = Settings()
    assert s.app_id == "stream-eval-demo"
    assert s.kafka.partitions == 2
    assert s.topics.traces == "demo.llm-traces"
    assert s.clickhouse.url == "" and s.clickhouse.path == ".stream-eval/demo/chdb"
    assert s.ingest.max_message_bytes == 1_048_576
    assert s.sampling.always_on_failed == ["grounding", "pii"]
    assert {r: s.sample_rate_for(r) for r in s.routes} == {
        "support-rag": 0.20,
        "chat": 0.02,
        "code-assistant": 0.05,
        "extract-json": 0.05,
    }
    assert s.checks_for("extract-json").expects_json is True
    assert s.checks_for("chat").expects_json is False
    assert s.checks_for("extract-json").max_output_chars == 20_000


def test_assembled_traces_must_fit_what_ingest_accepts() -> None:
    from stream_eval.config import AssemblySettings, IngestSettings

    with pytest.raises(ValueError, match="max_bytes_per_trace"):
        Settings(
            ingest=IngestSettings(max_message_bytes=1024 * 1024),
            assembly=AssemblySettings(max_bytes_per_trace=2 * 1024 * 1024),
        )


def test_context_block_pattern_is_checked_at_load() -> None:
    from stream_eval.config import OtelSettings

    with pytest.raises(ValueError, match="regular expression"):
        OtelSettings(context_block_pattern="[unclosed")
    with pytest.raises(ValueError, match="content"):
        OtelSettings(context_block_pattern=r"^\[(?P<id>\w+)\]")


def test_load_settings_leaves_the_environment_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STREAM_EVAL_CONFIG", raising=False)
    monkeypatch.delenv("STREAM_EVAL_APP_ID", raising=False)
    f = tmp_path / "c.toml"
    f.write_text('app_id = "from-file"\n')
    before = dict(os.environ)
    assert load_settings(str(f)).app_id == "from-file"
    assert dict(os.environ) == before
    assert Settings().app_id == "stream-eval"  # the file was for that call only
    with pytest.raises(FileNotFoundError, match="--config="):
        load_settings(str(tmp_path / "missing.toml"))
