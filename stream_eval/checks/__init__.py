"""Cheap checks run on every trace of the stream.

Each check is a pure function ``(trace, cfg) -> CheckResult | None`` (``None``: not applicable
to this trace) in its own module; ``CHECKS`` holds them in their fixed order, and
``run_checks`` applies the enabled ones to a batch. The online pipeline and the offline
runner share them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from stream_eval.checks.settings import CheckSettings
from stream_eval.trace import CheckResult, Trace

from . import empty_output, grounding, json_output, pii, refusal, size
from .empty_output import check_empty_output
from .grounding import check_grounding
from .json_output import check_json_output
from .pii import check_pii
from .refusal import check_refusal
from .size import check_size

CheckFn = Callable[[Trace, CheckSettings], CheckResult | None]

# The one list of the checks, in their fixed order: each module names its check (``NAME``);
# the settings validate check names against it (``config.CheckSettings.disabled``).
CHECKS: dict[str, CheckFn] = {
    empty_output.NAME: check_empty_output,
    refusal.NAME: check_refusal,
    grounding.NAME: check_grounding,
    pii.NAME: check_pii,
    size.NAME: check_size,
    json_output.NAME: check_json_output,
}


def enabled_checks(cfg: CheckSettings) -> tuple[CheckFn, ...]:
    """The checks not in ``cfg.disabled``, in ``CHECKS`` order.

    Names in ``cfg.disabled`` that are not check names are ignored.
    """
    disabled = set(cfg.disabled)
    return tuple(fn for name, fn in CHECKS.items() if name not in disabled)


def run_checks(
    traces: Sequence[Trace], checks_for: Callable[[str], CheckSettings]
) -> list[list[CheckResult]]:
    """Run every enabled check on every trace of a batch.

    Returns one list per trace (same order), holding the results of the applicable checks in
    ``CHECKS`` order. ``checks_for`` (e.g. ``Settings.checks_for``) is called once per
    distinct route in the batch. Exceptions raised by a check propagate.
    """
    plans: dict[str, tuple[CheckSettings, tuple[CheckFn, ...]]] = {}
    out: list[list[CheckResult]] = []
    for trace in traces:
        plan = plans.get(trace.route)
        if plan is None:
            cfg = checks_for(trace.route)
            plan = plans[trace.route] = (cfg, enabled_checks(cfg))
        cfg, fns = plan
        results: list[CheckResult] = []
        for fn in fns:
            r = fn(trace, cfg)
            if r is not None:
                results.append(r)
        out.append(results)
    return out


__all__ = [
    "CHECKS",
    "CheckFn",
    "check_empty_output",
    "check_grounding",
    "check_json_output",
    "check_pii",
    "check_refusal",
    "check_size",
    "enabled_checks",
    "run_checks",
]
