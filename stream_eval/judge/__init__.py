"""The LLM judge stage. This package holds the judge-requests message contract for now."""
