"""Sessions: calls grouped into conversations, closed by an inactivity gap on the
stream's watermark, with the signals only a conversation shows (rephrases, abandonment,
escalation)."""
