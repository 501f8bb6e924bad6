"""The local Kafka broker for the demo and the tests: deploy/kafka/kafka.sh, from Python."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "kafka.sh"


def broker(command: str, check: bool = True) -> int:
    """Run ``kafka.sh COMMAND`` (start | stop | status | reset | fetch); returns its exit code."""
    if not SCRIPT.is_file():
        raise FileNotFoundError(
            f"{SCRIPT} not found: the local broker script ships with the source checkout"
        )
    return subprocess.run(["bash", str(SCRIPT), command], check=check).returncode
