"""User feedback (thumbs, regenerations, edits, abandonment) joined to the traces it is about."""
