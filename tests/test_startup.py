"""What the worker's start does not pay for: the openai SDK (a second to import) is not
imported by an app whose judge is disabled, nor by the metrics it serves from start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import os
import sys
from stream_eval.app import create_app
from stream_eval.config import Settings
from stream_eval.metrics_catalog import families_for

settings = Settings(clickhouse={"path": sys.argv[1]})
assert not settings.judge.active, "the judge should be disabled here"
create_app(settings, "all")
assert families_for("all")
print("openai" in sys.modules, flush=True)
os._exit(0)  # the app's embedded store stays open: skip its teardown at exit
"""


def test_a_worker_without_a_judge_does_not_import_the_sdk(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "chdb")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
