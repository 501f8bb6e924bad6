"""The worker's malloc settings (``stream_eval.malloc``) apply on glibc, where CI runs."""

from __future__ import annotations

import platform

import pytest

from stream_eval import malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_malloc_is_tuned_on_glibc() -> None:
    assert malloc.tune() is True
