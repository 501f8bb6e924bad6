"""The LLM judge: request format, rubrics, prompt, verdict parsing, limits, budget, stage."""
