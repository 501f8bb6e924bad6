"""``deploy/kafka/kafka.sh start`` waits while the broker makes progress, not a fixed time.

A broker that keeps many partitions logs each one as it loads it; on a CI machine a
start took over a minute that way and the old fixed 60 s wait failed. Here a stand-in
``java`` (a script: the storage tool's two calls, then a "broker" that logs a line every
0.4 s before it listens and says it started) runs under the real script: a start whose
log keeps growing for longer than ``STREAM_EVAL_KAFKA_START_TIMEOUT`` succeeds; a start
whose log stands still fails after that timeout."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

from stream_eval.runner import free_port
from stream_eval.runtime.broker import SCRIPT

FAKE_JAVA = r"""#!/usr/bin/env bash
case " $* " in
  *" random-uuid "*) echo "AAAAAAAAAAAAAAAAAAAAAA"; exit 0 ;;
  *" format "*)
    props=$(printf '%s\n' "$@" | grep -m1 'server.properties')
    dir=$(grep '^log.dirs=' "$props" | cut -d= -f2)
    mkdir -p "$dir" && echo "cluster.id=fake" >"$dir/meta.properties"; exit 0 ;;
esac
for ((i = 0; i < FAKE_LINES; i++)); do echo "Log loaded for partition t-$i"; sleep 0.4; done
[[ -n $FAKE_NEVER_READY ]] && exec sleep 600
exec python3 -c '
import os, socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["STREAM_EVAL_KAFKA_PORT"])))
s.listen()
print("[KafkaRaftServer nodeId=1] Kafka Server started", flush=True)
time.sleep(600)
'
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home, java = tmp_path / "kafka-home", tmp_path / "jdk" / "bin" / "java"
    (home / "libs").mkdir(parents=True)
    (home / "libs" / "kafka_2.13-4.4.0.jar").write_bytes(b"")
    (home / ".fetched").write_text("fake\n")
    java.parent.mkdir(parents=True)
    java.write_text(FAKE_JAVA)
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    port = free_port()
    return {
        **os.environ,
        "JAVA_HOME": str(tmp_path / "jdk"),
        "STREAM_EVAL_KAFKA_HOME": str(home),
        "STREAM_EVAL_KAFKA_STATE": str(tmp_path / "state"),
        "STREAM_EVAL_KAFKA_PORT": str(port),
        "STREAM_EVAL_KAFKA_CONTROLLER_PORT": str(free_port()),
        "STREAM_EVAL_KAFKA_START_TIMEOUT": "2",
        "STREAM_EVAL_KAFKA_STOP_TIMEOUT": "5",
        **extra,
    }


def _kafka_sh(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=120
    )


def test_a_start_that_keeps_logging_is_waited_for(tmp_path: Path) -> None:
    env = _env(tmp_path, FAKE_LINES="10")  # 4 s of progress, twice the 2 s timeout
    try:
        t0 = time.monotonic()
        out = _kafka_sh("start", env)
        assert out.returncode == 0, out.stderr
        assert time.monotonic() - t0 >= 3.5
        assert "running on 127.0.0.1" in out.stderr
    finally:
        _kafka_sh("stop", env)


def test_a_start_whose_log_stands_still_gives_up(tmp_path: Path) -> None:
    env = _env(tmp_path, FAKE_LINES="1", FAKE_NEVER_READY="1")
    try:
        t0 = time.monotonic()
        out = _kafka_sh("start", env)
        assert out.returncode == 1
        assert "2s without progress" in out.stderr
        assert time.monotonic() - t0 < 30
        assert _kafka_sh("status", env).returncode == 1  # what it started was stopped
    finally:
        _kafka_sh("stop", env)
