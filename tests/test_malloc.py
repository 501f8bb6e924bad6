"""The worker's allocator settings (``stream_eval.malloc``): glibc's apply where CI runs,
and chdb's jemalloc receives its options from the store (checked on chdb itself: with
``abort_conf`` jemalloc aborts the process on an option it does not know)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from stream_eval import malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_malloc_is_tuned_on_glibc() -> None:
    assert malloc.tune() is True


def _open_store(
    tmp_path: Path, conf: str, env_conf: str | None
) -> subprocess.CompletedProcess[str]:
    """Open an embedded store in a new process, with ``malloc.JEMALLOC_CONF = conf``."""
    code = (
        "import os, sys\n"
        "from stream_eval import malloc\n"
        f"malloc.JEMALLOC_CONF = {conf!r}\n"
        "from stream_eval.sink.store import ChdbStore\n"
        "s = ChdbStore(sys.argv[1], 'db')\n"
        "s.query('SELECT 1')\n"
        "s.close()\n"
        "print(os.environ[malloc.JEMALLOC_ENV])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != malloc.JEMALLOC_ENV}
    if env_conf is not None:
        env[malloc.JEMALLOC_ENV] = env_conf
    return subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "chdb")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_store_hands_chdb_s_jemalloc_its_options(tmp_path: Path) -> None:
    # an option jemalloc does not know aborts: the store set them before chdb loaded
    bad = _open_store(tmp_path, "abort_conf:true,not_an_option:1", None)
    assert bad.returncode != 0
    # ours are all options it knows
    ok = _open_store(tmp_path, f"abort_conf:true,{malloc.JEMALLOC_CONF}", None)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.stdout.strip() == f"abort_conf:true,{malloc.JEMALLOC_CONF}"


def test_an_operator_s_jemalloc_options_are_kept(tmp_path: Path) -> None:
    kept = _open_store(tmp_path, "abort_conf:true,not_an_option:1", "dirty_decay_ms:1000")
    assert kept.returncode == 0, kept.stderr[-2000:]
    assert kept.stdout.strip() == "dirty_decay_ms:1000"
