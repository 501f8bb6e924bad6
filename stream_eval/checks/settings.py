"""The cheap checks' settings (``[checks]``, and per route ``[routes.X.checks]``): kept
with the checks they tune; ``config.Settings`` holds them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from stream_eval.privacy.patterns import PII_FIELDS, PII_KINDS

DEFAULT_REFUSAL_PHRASES: tuple[str, ...] = (
    "i can't help with",
    "i cannot help with",
    "i can't assist with",
    "i cannot assist with",
    "i'm unable to help",
    "i am unable to help",
    "i'm not able to help",
    "i am not able to help",
    "i can't provide",
    "i cannot provide",
    "i won't be able to",
    "i will not be able to",
    "i'm sorry, but i can't",
    "i'm sorry, but i cannot",
    "sorry, i can't",
    "sorry, i cannot",
    "i must decline",
    "i have to decline",
    "i can't comply",
    "i cannot comply",
    "as an ai language model, i cannot",
    "as an ai, i cannot",
    "i'm not allowed to",
    "i am not allowed to",
    "that request violates",
    "against my guidelines",
    "i can't do that",
    "i cannot do that",
    "i'm unable to provide",
    "i am unable to provide",
)


class CheckSettings(BaseModel):
    """Thresholds of the cheap checks. Every field can be overridden per route. The names
    in ``disabled`` and ``pii_kinds`` are checked against the registries
    (``checks.CHECKS``, ``checks.pii.PATTERNS``) by ``config.Settings``, which holds
    these settings for every route."""

    model_config = ConfigDict(extra="forbid")

    disabled: list[str] = Field(default_factory=list)
    refusal_phrases: list[str] = Field(default_factory=lambda: list(DEFAULT_REFUSAL_PHRASES))
    grounding_min_supported: float = Field(default=0.6, ge=0, le=1)
    grounding_sentence_overlap: float = Field(default=0.5, ge=0, le=1)
    pii_kinds: list[str] = Field(default_factory=lambda: list(PII_KINDS))
    # the fields the pii check reads (``privacy.patterns.PII_FIELDS``)
    pii_fields: list[str] = Field(default_factory=lambda: list(PII_FIELDS))
    max_output_chars: int = Field(default=20_000, ge=1)
    max_input_chars: int = Field(default=100_000, ge=1)
    max_total_tokens: int | None = Field(default=None, ge=1)
    expects_json: bool = False
