"""In-stream SLI windows: deltas per source message, state per slice, closed by watermark."""
