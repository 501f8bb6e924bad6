"""Bytes from the traces topic -> normalised traces, or dead letters with a reason."""
