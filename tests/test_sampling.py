"""Sampling: a deterministic hash of the trace id, so a replay samples exactly the same traces."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import nonempty

from stream_eval import sampling
from stream_eval.sampling import decide, unit_hash
from stream_eval.trace import CheckResult

IDS = [f"{i * 2654435761 % (1 << 128):032x}" for i in range(20_000)]
ALWAYS = ("grounding", "pii")


def sampled(ids: list[str], rate: float, salt: str = "") -> set[str]:
    return {i for i in ids if decide(i, rate, [], ALWAYS, salt) == "rate"}


# --------------------------------------------------------------------------- unit_hash


def test_unit_hash_deterministic_and_in_range() -> None:
    values = [unit_hash(i) for i in IDS]
    assert values == [unit_hash(i) for i in IDS]
    assert all(0.0 <= v < 1.0 for v in values)
    assert len(set(values)) == len(IDS)  # no collisions on distinct ids


def test_unit_hash_is_pinned_across_versions() -> None:
    # xxh3_64("abc") / 2**64: a changed hash would silently re-draw every route's sample.
    assert unit_hash("abc") == 8696274497037089104 / 2**64
    assert unit_hash("bc", salt="a") == unit_hash("abc")  # the salt is a prefix


def test_unit_hash_same_in_another_process() -> None:
    code = "from stream_eval.sampling import unit_hash; print(repr(unit_hash('trace-42', 's')))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert float(out.stdout) == unit_hash("trace-42", "s")


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.1, 0.5, 0.9])
def test_unit_hash_roughly_uniform(rate: float) -> None:
    frac = sum(unit_hash(i) < rate for i in IDS) / len(IDS)
    assert abs(frac - rate) <= 0.01


def test_unit_hash_deciles() -> None:
    buckets = [0] * 10
    for i in IDS:
        buckets[int(unit_hash(i) * 10)] += 1
    assert all(abs(b - len(IDS) / 10) <= 0.1 * len(IDS) / 10 for b in buckets), buckets


def test_salt_changes_decisions() -> None:
    plain = sampled(IDS, 0.1)
    salted = sampled(IDS, 0.1, salt="2024-q3")
    assert abs(len(salted) / len(IDS) - 0.1) <= 0.01
    # Independent draws overlap on about rate * rate of the ids, far below either sample.
    assert len(plain & salted) < 0.2 * len(plain)
    assert salted == sampled(IDS, 0.1, salt="2024-q3")  # still deterministic


def test_sample_grows_monotonically_with_rate() -> None:
    small, large = sampled(IDS, 0.05), sampled(IDS, 0.2)
    assert small < large


def test_unit_hash_below_one_for_the_largest_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampling.xxhash, "xxh3_64_intdigest", lambda b: (1 << 64) - 1)
    assert unit_hash("any") < 1.0
    assert decide("any", 1.0, [], ALWAYS) == "rate"


# --------------------------------------------------------------------------- decide


def test_always_on_failed_wins_even_at_rate_zero() -> None:
    results = [
        CheckResult("empty_output", True),
        CheckResult("grounding", False, 0.2, "unsupported"),
        CheckResult("pii", False, None, "email x1"),
    ]
    assert all(decide(i, 0.0, results, ALWAYS) == "failed:grounding" for i in IDS[:200])
    # The first failed always-check, in result order.
    assert decide("x", 0.0, results[::-1], ALWAYS) == "failed:pii"


def test_failed_check_not_in_always_list_does_not_force() -> None:
    results = [CheckResult("refusal", False, None, "phrase"), CheckResult("grounding", True, 1.0)]
    assert all(decide(i, 0.0, results, ALWAYS) == "" for i in IDS[:500])
    assert decide("x", 0.0, results, ["refusal"]) == "failed:refusal"
    assert decide("x", 0.0, results, []) == ""


def test_rate_zero_never_samples() -> None:
    passed = [CheckResult("grounding", True, 1.0), CheckResult("pii", True)]
    assert all(decide(i, 0.0, passed, ALWAYS) == "" for i in IDS)


def test_rate_zero_never_samples_even_the_smallest_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampling.xxhash, "xxh3_64_intdigest", lambda b: 0)
    assert unit_hash("any") == 0.0
    assert decide("any", 0.0, [], ALWAYS) == ""
    assert decide("any", 1e-9, [], ALWAYS) == "rate"


def test_rate_one_always_samples() -> None:
    assert all(decide(i, 1.0, [], ALWAYS) == "rate" for i in IDS)


def test_rate_decision_follows_the_hash() -> None:
    for i in nonempty(IDS[:2000]):
        assert (decide(i, 0.3, [], ALWAYS) == "rate") == (unit_hash(i) < 0.3)
        assert (decide(i, 0.3, [], ALWAYS, "s") == "rate") == (unit_hash(i, "s") < 0.3)


def test_replay_decides_the_same() -> None:
    results = [CheckResult("pii", i % 50 != 0) for i in range(len(IDS))]
    first = [decide(i, 0.07, [r], ALWAYS, "salt") for i, r in zip(IDS, results, strict=True)]
    second = [decide(i, 0.07, [r], ALWAYS, "salt") for i, r in zip(IDS, results, strict=True)]
    assert first == second
    assert first.count("failed:pii") == len(IDS) // 50
    assert 0 < first.count("rate") < len(IDS)
