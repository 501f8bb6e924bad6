"""Synthetic traces for tests, benchmarks and the demo: JSON trace dicts, OTLP encodings."""
