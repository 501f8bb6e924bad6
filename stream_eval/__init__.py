"""stream-eval: online evaluation of LLM traces from Kafka."""

__version__ = "0.1.0"
