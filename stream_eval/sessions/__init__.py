"""Sessions closed by the stream's watermark (``close``, with its queries in ``sql``); what
a session is and its signals are pure functions in ``checks.sessions``."""
