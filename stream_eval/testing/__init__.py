"""Test doubles for exercising stream-eval against real protocols (see `openai_stub`)."""

from stream_eval.testing.openai_stub import Behaviour, RecordedRequest, StubOpenAI

__all__ = ["Behaviour", "RecordedRequest", "StubOpenAI"]
