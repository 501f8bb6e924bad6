"""Kafka client settings for the clients stream-eval uses (Faust/aiokafka, confluent-kafka)."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException

from stream_eval.backoff import Backoff
from stream_eval.config import KafkaSettings

T = TypeVar("T")

# What a fresh, restarted or rebalancing broker answers for a while; worth a retry.
TRANSIENT = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError._TIMED_OUT,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
    }
)


def retry_transient(
    fn: Callable[[], T], attempts: int = 10, delay: float = 0.5, also: frozenset[int] = frozenset()
) -> T:
    """``fn()``, retried ``attempts`` times ``delay`` apart while Kafka answers with a
    transient error (``TRANSIENT``, one librdkafka calls retriable, or one in ``also``)."""
    delays = Backoff(delay, 1.0, delay).delays()  # a fixed delay
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except KafkaException as exc:
            err = exc.args[0]
            transient = err.retriable() or err.code() in TRANSIENT or err.code() in also
            if attempt == attempts or not transient:
                raise
            time.sleep(next(delays))
    raise AssertionError("unreachable")


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


def aiokafka_config(k: KafkaSettings) -> dict[str, Any]:
    """Connection keyword arguments for aiokafka's producer and consumer."""
    conf: dict[str, Any] = {
        "bootstrap_servers": k.bootstrap_servers,
        "security_protocol": k.security_protocol,
    }
    if "SSL" in k.security_protocol:
        conf["ssl_context"] = ssl.create_default_context(cafile=k.ssl_cafile)
    if k.sasl_mechanism:
        conf["sasl_mechanism"] = k.sasl_mechanism
        conf["sasl_plain_username"] = k.sasl_username or ""
        conf["sasl_plain_password"] = k.sasl_password.get_secret_value() if k.sasl_password else ""
    return conf
