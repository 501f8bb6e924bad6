"""Tables written like another one, column for column: each schema statement that creates
or alters the first is made for its twin too (``sink.schema``), so the two never differ."""

from __future__ import annotations

# A shadow judge's results (``judge.shadow``): beside the live judge's, never read by the
# SLIs, the alerts or the review queue.
TWINS: dict[str, str] = {"judge_results": "shadow_judge_results"}
