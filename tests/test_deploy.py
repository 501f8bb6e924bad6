"""The deployment files, validated without a Docker engine: structure, config, no secrets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from helpers import nonempty

from stream_eval.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_real_components() -> None:
    services = COMPOSE["services"]
    assert {"kafka", "clickhouse", "grafana", "worker", "topics"} <= set(services)
    assert services["worker"]["command"][0] == "worker"
    assert services["worker"]["deploy"]["replicas"] >= 2  # one consumer group, several workers
    plugins = services["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    assert "grafana-clickhouse-datasource" in plugins


def test_compose_secrets_come_from_the_environment() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for key, value in nonempty(re.findall(r"^\s*([A-Z_]*PASSWORD[A-Z_]*):\s*(.+)$", text, re.M)):
        assert value.startswith("${") and ":?" in value, f"{key} must come from the environment"


def test_worker_environment_is_valid_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    env = dict(COMPOSE["x-stream-eval-env"])
    env["STREAM_EVAL_CLICKHOUSE__PASSWORD"] = "from-env"
    env["STREAM_EVAL_CONFIG"] = str(ROOT / "deploy" / "stream-eval.toml")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = Settings()
    assert s.kafka.bootstrap_servers == "kafka:9092"
    assert s.clickhouse.url == "http://clickhouse:8123"
    assert s.clickhouse.password is not None
    assert s.clickhouse.password.get_secret_value() == "from-env"
    assert s.kafka.partitions == 8


def test_mounted_config_files_exist() -> None:
    mounts = [
        vol.split(":")[0]
        for svc in COMPOSE["services"].values()
        for vol in svc.get("volumes", [])
        if vol.startswith("./")
    ]
    assert len(mounts) >= 3, mounts  # the config, Grafana's provisioning and dashboards
    for src in nonempty(mounts):
        assert (ROOT / src).exists(), src


def test_dockerfile_copies_what_exists() -> None:
    lines = (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
    sources = [src for line in lines if line.startswith("COPY ") for src in line.split()[1:-1]]
    assert "stream_eval" in sources and "pyproject.toml" in sources, sources
    for src in nonempty(sources):
        assert (ROOT / src).exists(), src


def test_grafana_datasource_provisioning() -> None:
    doc = yaml.safe_load((ROOT / "grafana/provisioning/datasources/clickhouse.yaml").read_text())
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "grafana-clickhouse-datasource"
    assert ds["secureJsonData"]["password"].startswith("$")  # from Grafana's environment
