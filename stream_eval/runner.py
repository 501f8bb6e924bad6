"""Running a stream-eval worker as a child process, bounded: start, wait until drained, stop.

Used by the demo, the integration tests and the benchmark. Drained means the
worker's consumer group has committed every message of the traces topic, and the
worker commits only what is durable in ClickHouse.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from stream_eval.config import Settings
from stream_eval.runtime.lag import group_lag


class WorkerFailed(RuntimeError):
    pass


MetricKey = tuple[str, tuple[tuple[str, str], ...]]  # name, sorted labels


def scrape_metrics(port: int, host: str = "127.0.0.1") -> dict[MetricKey, float]:
    """A worker's Prometheus metrics, read as Prometheus reads them."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProcess:
    def __init__(
        self,
        config_path: str | None,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """``cwd``: where it runs (its ``stream_eval`` is the one found from there first:
        a source tree's, with ``PYTHONPATH``, for an A/B of two versions)."""
        self.config_path = config_path
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, loglevel: str = "warn", role: str = "all") -> None:
        """``role``: the worker's ``--role`` (all, ingest or judge)."""
        cmd = [sys.executable, "-m", "stream_eval"]
        if self.config_path:
            cmd += ["--config", self.config_path]
        cmd += ["worker", "--loglevel", loglevel, "--role", role]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                cwd=self.cwd,
            )

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""

    def wait_drained(
        self,
        settings: Settings,
        timeout: float = 300.0,
        progress: Callable[[int], None] | None = None,
        poll: float = 1.0,
        topics: list[str] | None = None,
    ) -> None:
        """Block until the group lag on ``topics`` (default: traces) is 0.

        Raises WorkerFailed if the worker dies or the timeout passes.
        """
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise WorkerFailed(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            lag = sum(group_lag(settings, t) for t in topics or [settings.topics.traces])
            if progress is not None:
                progress(lag)
            if lag == 0:
                return
            if time.monotonic() > deadline:
                raise WorkerFailed(f"not drained after {timeout}s (lag {lag}):\n{self.log_tail()}")
            time.sleep(poll)

    def rss_mb(self) -> float:
        """Resident memory now (Linux VmRSS) in MB, of the worker and every process it
        started (its prepare pool)."""
        assert self.proc is not None
        return tree_rss_mb(self.proc.pid)

    def stop(self, grace: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds (a Faust worker can linger)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)

    def kill(self) -> None:
        """Crash it: SIGKILL, no shutdown at all."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it (read from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def tree_rss_mb(root: int) -> float:
    """Resident memory now (VmRSS) in MB of ``root`` and its descendants together."""
    return sum(_status_mb(pid, "VmRSS:") for pid in process_tree(root))


def _status_mb(pid: int, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:  # gone meanwhile
        pass
    return 0.0
