"""Kafka client settings for the clients stream-eval uses (Faust/aiokafka, confluent-kafka)."""

from __future__ import annotations

import ssl
from typing import Any

from stream_eval.config import KafkaSettings


def confluent_config(k: KafkaSettings, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": k.bootstrap_servers,
        "security.protocol": k.security_protocol,
    }
    if k.sasl_mechanism:
        conf["sasl.mechanism"] = k.sasl_mechanism
        conf["sasl.username"] = k.sasl_username or ""
        conf["sasl.password"] = k.sasl_password.get_secret_value() if k.sasl_password else ""
    if k.ssl_cafile:
        conf["ssl.ca.location"] = k.ssl_cafile
    conf.update(extra)
    return conf


def faust_credentials(k: KafkaSettings) -> Any:
    """``broker_credentials`` for faust.App, or None for PLAINTEXT."""
    import faust

    if k.security_protocol == "PLAINTEXT":
        return None
    ctx = ssl.create_default_context(cafile=k.ssl_cafile) if "SSL" in k.security_protocol else None
    if k.sasl_mechanism:
        return faust.SASLCredentials(
            username=k.sasl_username or "",
            password=k.sasl_password.get_secret_value() if k.sasl_password else "",
            mechanism=k.sasl_mechanism,
            ssl_context=ctx,
        )
    return faust.SSLCredentials(ctx)
