"""`stream-eval lag` lists every topic the workers consume, in the group that consumes it:
checked against the topics a real Faust app of each role subscribes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stream_eval.config import Settings
from stream_eval.runtime.lag import consumed

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "deploy" / "demo.toml"

# Builds the app of each role (no Kafka needed: nothing is started) and prints, per role,
# its consumer group and the topics its agents and the ingest's bulk drain subscribe. In
# a process of its own: each app opens the store, and chdb allows one session a process.
SUBSCRIBED = """
import json
import os
import sys
from stream_eval.runtime import bulk_drain
from stream_eval.app import create_app, group_id
from stream_eval.config import Settings
s = Settings()
out = []
for role in ("all", "ingest", "judge"):
    app = create_app(s, role)
    names = {t for a in app.agents.values() for t in a.get_topic_names()}
    out += [[group_id(s, role), t] for t in names | set(bulk_drain.topics(app))]
print(json.dumps(out))
sys.stdout.flush()
os._exit(0)  # the apps' stores stay open (nothing was started to stop); chdb's exit crashes
"""


def _env(tmp_path: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_EVAL_")}
    env.update(
        STREAM_EVAL_CONFIG=str(DEMO),
        STREAM_EVAL_CLICKHOUSE__PATH=str(tmp_path / "chdb"),
        STREAM_EVAL_JUDGE__ENABLED="true",  # the judge agent is only added when it is on
        STREAM_EVAL_METRICS__PORT="0",
        **extra,
    )
    return env


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"STREAM_EVAL_TOPICS__OTLP_LOGS": ""},
        {"STREAM_EVAL_TOPICS__OTLP_SPANS": "", "STREAM_EVAL_TOPICS__OTLP_LOGS": ""},
    ],
    ids=["otlp-on", "spans-only", "otlp-off"],
)
def test_lag_lists_what_the_workers_subscribe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: dict[str, str]
) -> None:
    env = _env(tmp_path, extra)
    run = subprocess.run(
        [sys.executable, "-c", SUBSCRIBED], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    subscribed = {(group, topic) for group, topic in json.loads(run.stdout.splitlines()[-1])}
    for key in list(os.environ):
        if key.startswith("STREAM_EVAL_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("STREAM_EVAL_"):
            monkeypatch.setenv(key, value)
    s = Settings()
    rows = consumed(s)
    assert len(rows) == len(set(rows))
    assert set(rows) == subscribed
    otlp = {s.topics.otlp_spans, s.topics.otlp_logs, s.topics.otlp_assembly} - {""}
    assert {t for _, t in rows} >= {s.topics.traces, s.topics.feedback, s.topics.judge_requests}
    assert bool(otlp & {t for _, t in rows}) == bool(s.topics.otlp_spans or s.topics.otlp_logs)
