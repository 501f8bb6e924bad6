"""The privacy policy's settings (``[privacy]``, and per route ``[routes.X.privacy]``):
what becomes of each field of a trace before anything leaves the worker."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from stream_eval.privacy.patterns import PII_KINDS

# keep: as it came; mask: each value found replaced by a typed placeholder numbered within
# the trace (<EMAIL_1>); hash: by a keyed digest of the value (<EMAIL:3f9a0c1d2e4b>), the
# same for the same value everywhere; drop: the whole field emptied.
Mode = Literal["keep", "mask", "hash", "drop"]
MODES: tuple[str, ...] = ("keep", "mask", "hash", "drop")

# The fields a policy names: the texts of a trace (and of an agent run) each one covers.
FIELDS: tuple[str, ...] = ("input", "system", "output", "documents", "tools", "extra")


class FieldModes(BaseModel):
    """A mode per field; a route's ``[routes.X.privacy]`` overrides some of them."""

    model_config = ConfigDict(extra="forbid")

    input: Mode = "mask"  # the user's message (an agent run's task)
    system: Mode = "mask"  # system and developer messages
    output: Mode = "mask"  # the answer (an agent run's final answer)
    documents: Mode = "mask"  # retrieved context
    tools: Mode = "mask"  # tool calls' arguments, results and errors
    extra: Mode = "mask"  # the unknown fields a trace carried, kept


class PrivacySettings(FieldModes):
    """The policy for every route, and what it applies with."""

    # the kinds masked or hashed (``privacy.patterns.PATTERNS``); the pii check's kinds
    # are its own (``checks.pii_kinds``)
    kinds: list[str] = Field(default_factory=lambda: list(PII_KINDS))
    # dead letters: their bytes masked as text (binary payloads masked in place, the same
    # length, so a protobuf still parses), or dropped with their offsets, reason and size kept
    dead_letters: Literal["mask", "drop"] = "mask"
    hash_key: SecretStr | None = None  # environment only: STREAM_EVAL_PRIVACY__HASH_KEY

    @field_validator("kinds")
    @classmethod
    def _kinds_known(cls, kinds: list[str]) -> list[str]:
        unknown = sorted(set(kinds) - set(PII_KINDS))
        if unknown:
            raise ValueError(f"unknown PII kinds {unknown}; known: {list(PII_KINDS)}")
        return kinds

    def modes(self) -> FieldModes:
        return FieldModes.model_validate({f: getattr(self, f) for f in FIELDS})
