"""The worker's identity in its consumer group: a static member id (KIP-345).

With dynamic membership a worker killed with SIGKILL leaves its member behind; the
worker started in its place waits for that member's session to time out before the
group rebalances (about a minute with Faust's defaults). A static member that comes back
under the same ``group.instance.id`` replaces its old self at once and gets the same
partitions, with no rebalance.

The id is ``kafka.group_instance_id`` when set (one per worker, stable across restarts,
such as a StatefulSet pod's name). Otherwise each worker on a host claims the lowest free
*slot* of its group, held by an advisory file lock for the life of the process (the
kernel frees it when the process dies, however it dies), so a worker restarted on the
same host takes the id its predecessor had, and two workers on one host never share one.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import tempfile
from pathlib import Path

from stream_eval.config import KafkaSettings

MAX_SLOTS = 1024
_held: dict[str, int] = {}  # group -> the open descriptor of its slot's lock


def slot_dir() -> Path:
    return Path(tempfile.gettempdir()) / "stream-eval-members"


def claim_slot(group: str, directory: Path | None = None) -> int:
    """The lowest slot of ``group`` no live process on this host holds; held until exit."""
    d = directory or slot_dir()
    d.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", group)[:200]
    for n in range(MAX_SLOTS):
        fd = os.open(d / f"{safe}.{n}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _held[f"{d}/{group}"] = fd
        return n
    raise RuntimeError(f"more than {MAX_SLOTS} workers of group {group!r} on this host")


def instance_id(k: KafkaSettings, group: str) -> str | None:
    """The worker's ``group.instance.id`` in ``group``; None for dynamic membership."""
    if not k.static_membership:
        return None
    if k.group_instance_id:
        return k.group_instance_id
    return f"{socket.gethostname()}-{claim_slot(group)}"
