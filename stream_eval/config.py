"""One configuration model: a TOML file plus ``STREAM_EVAL_*`` environment overrides.

Precedence (highest first): constructor arguments, environment variables
(``STREAM_EVAL_KAFKA__BOOTSTRAP_SERVERS=...``, nested with ``__``), the TOML
file named by ``--config`` or ``STREAM_EVAL_CONFIG``, then the defaults below.
Secrets (SASL passwords, the ClickHouse password, API keys) are read from the
environment only; they have no place in the file.
"""

from __future__ import annotations

import ipaddress
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from stream_eval.checks import CHECKS
from stream_eval.checks.runs import RUN_CHECKS
from stream_eval.checks.runs import RunSettings as RunSettings
from stream_eval.checks.sessions import OUTCOMES
from stream_eval.checks.sessions import SessionSettings as SessionSettings
from stream_eval.checks.settings import DEFAULT_REFUSAL_PHRASES as DEFAULT_REFUSAL_PHRASES
from stream_eval.checks.settings import CheckSettings as CheckSettings
from stream_eval.privacy.patterns import PII_FIELDS, PII_KINDS
from stream_eval.privacy.redact import Policy
from stream_eval.privacy.settings import FieldModes
from stream_eval.privacy.settings import PrivacySettings as PrivacySettings
from stream_eval.rubrics import RUBRIC_NAMES
from stream_eval.sink.retention import TIME_COLUMNS

# Names are owned by what they name: the checks by ``checks.CHECKS``, the PII kinds by
# ``privacy.patterns.PATTERNS``, the rubrics by ``rubrics.RUBRICS``; the settings
# validate against them.


def _known(what: str, names: list[str] | None, known: tuple[str, ...]) -> None:
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {list(known)}")


def _known_checks(names: list[str]) -> list[str]:
    _known("checks", names, tuple(CHECKS))
    return names


def _known_check_settings(cfg: CheckSettings, where: str) -> None:
    try:
        _known("checks", cfg.disabled, tuple(CHECKS))
        _known("PII kinds", cfg.pii_kinds, PII_KINDS)
        _known("PII fields", cfg.pii_fields, PII_FIELDS)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _known_rubrics(names: list[str] | None) -> list[str] | None:
    _known("rubrics", names, RUBRIC_NAMES)
    return names


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSettings(_Model):
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None  # environment only
    ssl_cafile: str | None = None
    consumer_group: str = "stream-eval"
    partitions: int = Field(default=4, ge=1)  # for topics stream-eval creates
    replication_factor: int = Field(default=1, ge=1)
    # An assigned partition with messages waiting, its topic's stream idle and its
    # position unmoved for this long is resumed and fetched again from its position
    # (stream_eval.runtime.stall_watch); 0 turns the watchdog off.
    stall_after_seconds: float = Field(default=30.0, ge=0)
    # Static group membership (KIP-345): a worker restarted after a crash takes its
    # partitions back at once instead of waiting for its old session to time out. The
    # instance id is ``group_instance_id`` when set (one per worker, stable across its
    # restarts: a StatefulSet pod's name), else the host name and a per-host slot.
    static_membership: bool = True
    group_instance_id: str = ""
    # A member not heard from for this long is out of the group (its partitions move);
    # Faust's default is 60 s. The broker's group.min.session.timeout.ms (6 s) bounds it.
    session_timeout_seconds: float = Field(default=10.0, ge=6.0)
    # A worker asked to stop (SIGTERM, SIGINT) exits within this, however far its
    # shutdown got: what it had not written is not committed and is read again.
    shutdown_grace_seconds: float = Field(default=8.0, gt=0)


class TopicSettings(_Model):
    traces: str = "llm-traces"
    judge_requests: str = "stream-eval-judge-requests"
    dead_letters: str = "stream-eval-dead-letters"
    judge_dead_letters: str = "stream-eval-judge-dead-letters"
    feedback: str = "llm-feedback"  # published by the apps
    # OTLP from the Collector's Kafka exporter (its default topic names); "" = not read.
    # Spans and log records are assembled into whole traces (see [assembly]) and then
    # written to ``traces``. OTLP written to ``traces`` directly is read as already whole.
    otlp_spans: str = "otlp_spans"
    otlp_logs: str = "otlp_logs"
    otlp_assembly: str = "stream-eval-otlp-assembly"  # internal: pieces keyed by trace id
    labels: str = "stream-eval-labels"  # human review labels, as they are recorded
    # internal: each judge worker's Retry-After pauses, read by every judge worker
    judge_pauses: str = "stream-eval-judge-pauses"


class ClickHouseSettings(_Model):
    """``url`` empty: embedded chdb in ``path``. Otherwise a server via clickhouse-connect."""

    url: str = ""  # e.g. http://clickhouse:8123
    username: str = "default"
    password: SecretStr | None = None  # environment only
    database: str = "stream_eval"
    path: str = ".stream-eval/chdb"
    # days each table keeps a row (a TTL; 0: for ever): ``sink.retention``; unnamed tables
    # keep their defaults (``DEFAULT_DAYS``: bookkeeping only; the data is kept for ever)
    retention_days: dict[str, int] = Field(default_factory=dict)

    @field_validator("retention_days")
    @classmethod
    def _retention_known(cls, days: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(days) - set(TIME_COLUMNS))
        if unknown:
            raise ValueError(f"unknown tables {unknown}; known: {sorted(TIME_COLUMNS)}")
        negative = sorted(t for t, n in days.items() if n < 0)
        if negative:
            raise ValueError(f"retention days must be 0 (for ever) or more: {negative}")
        return days


class IngestSettings(_Model):
    # A batch goes out at batch_max_messages Kafka messages or chunk_max_bytes of values,
    # or batch_max_seconds after its first message came (runtime.intake; the OTLP agents
    # take batches of the same bounds with Faust's take_events).
    batch_max_messages: int = Field(default=500, ge=1)
    batch_max_seconds: float = Field(default=1.0, gt=0)
    # Step one of a batch (decode, checks, sampling, rows) runs in this many worker
    # processes (0: on a thread of the worker), on up to max_in_flight batches at once;
    # step two (watermarks, produce, the sink write, the ack) one batch at a time, in
    # offset order. A batch taken from Kafka is cut into pieces of at most
    # chunk_max_bytes of messages, so that the processes share even a large backlog.
    # Under load step two writes several pieces in one insert: those prepared meanwhile,
    # and those behind the first up to finish_min_bytes of messages together (it waits
    # for them only when they are in flight already). A large insert costs ClickHouse
    # less per row, and makes fewer parts to merge (README, Benchmark).
    processes: int = Field(default=2, ge=0, le=64)
    max_in_flight: int = Field(default=16, ge=1, le=64)
    chunk_max_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    finish_min_bytes: int = Field(default=8 * 1024 * 1024, ge=0)
    max_message_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_traces_per_message: int = Field(default=10_000, ge=1)
    # Dead letters of every stage above this are cut to it on the DLQ topics (header
    # stream-eval-truncated-from says the original size; stream-eval-source says where the
    # original still is).
    dead_letter_max_bytes: int = Field(default=900 * 1024, ge=1024)
    # A message (traces or feedback) with more bad items than this gives this many dead
    # letters, one per item, then one (reason too_many_bad_items) for all the others, with
    # their count and the whole message as its payload: `[1,1,...]` is not 100,000 dead
    # letters. Every item is still counted (ledger, metrics).
    max_dead_letters_per_message: int = Field(default=100, ge=1)
    # auto: a content-type header if present, else JSON when the message starts with { or [,
    # else OTLP protobuf.
    format: Literal["auto", "json", "otlp_proto", "otlp_json"] = "auto"
    # Event time is accepted within this range around the Kafka message time; outside it a
    # trace is dead-lettered (reason event_time) or, with event_time_policy = "clamp",
    # stamped with the message time and flagged (stream_eval.ingest.bounds).
    max_event_age_hours: float = Field(default=168.0, gt=0)
    max_event_future_seconds: float = Field(default=300.0, ge=0)
    event_time_policy: Literal["dead_letter", "clamp"] = "dead_letter"


class JudgeSettings(_Model):
    """The LLM judge: an OpenAI or OpenAI-compatible endpoint, pinned model, limits, prices."""

    enabled: bool | None = None  # None: on when base_url or an API key is configured
    base_url: str = ""  # empty: the openai SDK's default (api.openai.com)
    api_key: SecretStr | None = None  # environment only (or OPENAI_API_KEY)
    model: str = "gpt-4o-mini-2024-07-18"  # an exact, pinned model name
    response_format: Literal["json_schema", "json_object"] = "json_schema"
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_output_tokens: int = Field(default=300, ge=16)
    requests_per_minute: int = Field(default=60, ge=1)
    tokens_per_minute: int | None = Field(default=200_000, ge=1)
    rate_window_seconds: float = Field(default=60.0, gt=0)  # the window the two limits apply to
    max_concurrency: int = Field(default=8, ge=1)
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)  # per call, for 429, 5xx and timeouts
    backoff_base_seconds: float = Field(default=0.5, ge=0)
    backoff_max_seconds: float = Field(default=30.0, ge=0)
    price_input_per_mtok: float = Field(default=0.15, ge=0)  # USD per million input tokens
    price_output_per_mtok: float = Field(default=0.60, ge=0)
    rubrics: list[str] = Field(default_factory=lambda: list(RUBRIC_NAMES))
    daily_budget_usd: float | None = Field(default=None, ge=0)  # per route; None: unlimited
    batch_max_messages: int = Field(default=64, ge=1)
    batch_max_seconds: float = Field(default=1.0, gt=0)

    _rubrics_known = field_validator("rubrics")(_known_rubrics)

    def resolved_api_key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        return os.environ.get("OPENAI_API_KEY") or None

    @property
    def active(self) -> bool:
        if self.enabled is not None:
            return self.enabled
        return bool(self.base_url or self.resolved_api_key())


class FeedbackSettings(_Model):
    """The feedback join: feedback is matched to traces seen within the horizon."""

    horizon_hours: float = Field(default=24.0, gt=0)  # later feedback counts as `expired`
    batch_max_messages: int = Field(default=500, ge=1)
    batch_max_seconds: float = Field(default=1.0, gt=0)


class WindowSettings(_Model):
    """SLI windows (event time), closed when the watermark passes end + lateness."""

    tumbling_seconds: int = Field(default=60, ge=1)
    hopping_size_seconds: int = Field(default=3600, ge=1)
    hopping_step_seconds: int = Field(default=300, ge=1)
    allowed_lateness_seconds: int = Field(default=300, ge=0)
    # A partition that has written nothing for this long no longer holds windows open.
    idle_partition_seconds: float = Field(default=60.0, gt=0)
    close_interval_seconds: float = Field(default=5.0, gt=0)  # how often the closer runs
    refresh_seconds: float = Field(default=60.0, gt=0)  # late counts of closed windows...
    refresh_hours: float = Field(default=1.0, ge=0)  # ...rewritten for this long after

    @model_validator(mode="after")
    def _hop_divides(self) -> WindowSettings:
        if self.hopping_size_seconds % self.hopping_step_seconds:
            raise ValueError("hopping_size_seconds must be a multiple of hopping_step_seconds")
        return self


class AlertSettings(_Model):
    """Thresholds of the Grafana alert rules (generated into grafana/provisioning/alerting)."""

    window_minutes: int = Field(default=10, ge=1)  # each rule looks at this many minutes
    pending_minutes: int = Field(default=5, ge=0)  # the condition must hold this long to page
    min_traces: int = Field(default=20, ge=1)  # slices with fewer traces in the window are quiet
    refusal_rate_max: float = Field(default=0.10, ge=0, le=1)
    pii_rate_max: float = Field(default=0.01, ge=0, le=1)
    grounding_rate_min: float = Field(default=0.90, ge=0, le=1)
    empty_output_rate_max: float = Field(default=0.02, ge=0, le=1)
    check_failure_rate_max: float = Field(default=0.15, ge=0, le=1)
    thumbs_down_rate_max: float = Field(default=0.20, ge=0, le=1)
    judge_pass_rate_min: float = Field(default=0.70, ge=0, le=1)
    # judge estimates alert only on slices whose weighted sample is worth this many
    # uniformly drawn traces (Kish's effective sample size): fewer cannot tell
    min_judged_effective: float = Field(default=30.0, gt=0)
    # the judge against people: agreement on the verdict over the last 7 days, per judge
    # model and rubric version, with at least min_labels labels
    judge_agreement_min: float = Field(default=0.75, ge=0, le=1)
    min_labels: int = Field(default=20, ge=1)
    # offline vs online: a check's failure-rate gap above this on each of the last
    # divergence_days days (a gap that persists, not one noisy day)
    divergence_max: float = Field(default=0.10, ge=0, le=1)
    divergence_days: int = Field(default=3, ge=1)
    latency_p95_ms_max: float = Field(default=5000.0, gt=0)
    grounding_slo: float = Field(default=0.95, gt=0, lt=1)  # for the burn-rate alert
    contact_email: str = "oncall@example.com"


class RouteSettings(_Model):
    sample_rate: float | None = Field(default=None, ge=0, le=1)
    checks: dict[str, Any] = Field(default_factory=dict)  # overrides of CheckSettings
    rubrics: list[str] | None = None  # default: rubrics.RUBRICS (each only where it applies)
    judge_daily_budget_usd: float | None = Field(default=None, ge=0)
    privacy: dict[str, Any] = Field(default_factory=dict)  # overrides of the field modes

    _rubrics_known = field_validator("rubrics")(_known_rubrics)


class SamplingSettings(_Model):
    """What the judge sees: LLM calls at their route's rate (``default_rate``, a route's
    ``sample_rate``), always those that failed one of ``always_on_failed``; whole units
    (judged on ``rubrics.UNIT_RUBRICS``) likewise: closed sessions at ``session_rate``,
    always those whose outcome is in ``session_always_on``; agent runs at ``run_rate``,
    always those that failed one of ``run_always_on_failed``."""

    default_rate: float = Field(default=0.05, ge=0, le=1)
    salt: str = ""  # change it to draw a fresh, still deterministic, sample
    always_on_failed: list[str] = Field(default_factory=lambda: ["grounding", "pii"])
    session_rate: float = Field(default=0.05, ge=0, le=1)
    session_always_on: list[str] = Field(default_factory=lambda: ["abandoned_after_failure"])
    run_rate: float = Field(default=0.05, ge=0, le=1)
    run_always_on_failed: list[str] = Field(default_factory=lambda: list(RUN_CHECKS))

    _always_known = field_validator("always_on_failed")(_known_checks)

    @field_validator("session_always_on")
    @classmethod
    def _outcomes_known(cls, names: list[str]) -> list[str]:
        _known("session outcomes", names, OUTCOMES)
        return names

    @field_validator("run_always_on_failed")
    @classmethod
    def _run_checks_known(cls, names: list[str]) -> list[str]:
        _known("run checks", names, tuple(RUN_CHECKS))
        return names


class OtelSettings(_Model):
    """Where OTLP spans keep an LLM call's slice dimensions. Each list names attributes
    looked up on the LLM span, then on its ancestors up to the root (the spans of the same
    request: the whole trace once assembled), then on the resource; the first found wins.
    The route falls back to the resource's ``service.name``. Put your own first, e.g.
    ``route_attributes = ["app.route"]`` for apps that set ``app.route`` on their root
    span."""

    route_attributes: list[str] = Field(
        default_factory=lambda: [
            "stream_eval.route", "traceloop.association.properties.route",
            "traceloop.workflow.name", "gen_ai.agent.name", "langfuse.trace.name",
            "metadata.route",
        ]
    )  # fmt: skip
    prompt_id_attributes: list[str] = Field(
        default_factory=lambda: [
            "stream_eval.prompt.id", "traceloop.association.properties.prompt_id",
            "gen_ai.prompt.name", "langfuse.prompt.name",
        ]
    )  # fmt: skip
    prompt_version_attributes: list[str] = Field(
        default_factory=lambda: [
            "stream_eval.prompt.version", "traceloop.association.properties.prompt_version",
            "llm.prompt_template.version", "gen_ai.prompt.version", "langfuse.prompt.version",
            "metadata.prompt_version",
        ]
    )  # fmt: skip
    user_attributes: list[str] = Field(
        default_factory=lambda: [
            "user.id", "enduser.id", "traceloop.association.properties.user_id",
            "langfuse.user.id", "gen_ai.user.id",
        ]
    )  # fmt: skip
    session_attributes: list[str] = Field(
        default_factory=lambda: [
            "session.id", "gen_ai.conversation.id", "traceloop.association.properties.session_id",
            "langfuse.session.id",
        ]
    )  # fmt: skip
    tenant_attributes: list[str] = Field(
        default_factory=lambda: ["tenant.id", "traceloop.association.properties.tenant_id"]
    )
    # Retrieved context written into the system message, one block a line, e.g.
    # "[kb-1] The Pro plan includes 50 GB." -> document kb-1. Used when an LLM call has no
    # retrieved documents of its own nor from a retriever span before it. "" = off.
    context_block_pattern: str = ""

    @field_validator("context_block_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        if value:
            try:
                groups = re.compile(value).groupindex
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
            if "content" not in groups:
                raise ValueError("the pattern needs a named group 'content' (and may name 'id')")
        return value


class ReviewUser(_Model):
    """A user of the built-in sign-in: the scrypt hash ``stream-eval review hash-password``
    prints (never the password itself) and a role."""

    password_hash: str = Field(pattern=r"^scrypt\$")
    role: Literal["reviewer", "admin"] = "reviewer"


class ReviewSettings(_Model):
    """The human review queue: which traces a person should look at, how many, by whom.

    The worker's leader adds items every ``enqueue_interval_seconds`` from the traces of
    the last ``lookback_hours``; each (trace, LLM call) at most once; at most
    ``max_per_hour`` per route x reason x hour of the trace, so a bad deploy cannot
    flood it. Reasons, first match wins: ``judge_fail`` (a scored rubric below its pass
    threshold), ``thumbs_down``, ``failed_check`` (one of ``failed_checks``), and
    ``calibration`` (a random ``calibration_rate`` of the traces judged at their route's
    rate: the unbiased sample that measures the judge's own error); then whole units,
    ``abandoned_after_failure`` and ``rephrase_burst`` (sessions) and
    ``failed_run_check`` (agent runs)."""

    enqueue_interval_seconds: float = Field(default=30.0, gt=0)
    lookback_hours: float = Field(default=24.0, gt=0)
    max_per_hour: int = Field(default=20, ge=1)
    judge_fail: bool = True
    thumbs_down: bool = True
    failed_checks: list[str] = Field(default_factory=lambda: ["grounding", "pii"])
    calibration_rate: float = Field(default=0.05, ge=0, le=1)
    reviewers: int = Field(default=1, ge=1, le=5)  # labels wanted per item
    calibration_reviewers: int = Field(default=2, ge=1, le=5)  # two: inter-rater agreement
    reserve_minutes: float = Field(default=15.0, gt=0)  # an item opened is held this long
    # traces are queued for a check or thumbs-down only this long after they were read, so
    # the judge has had its say first (a trace it fails is queued as judge_fail)
    settle_seconds: float = Field(default=300.0, ge=0)
    # Who may use the review app (``review.auth``): ``password``, the built-in sign-in of
    # ``users``; or ``proxy``, an authenticating proxy's ``user_header``, believed only with
    # ``proxy_secret`` in ``proxy_secret_header`` or from an address in ``trusted_proxies``.
    auth: Literal["password", "proxy"] = "password"
    users: dict[str, ReviewUser] = Field(default_factory=dict)
    user_header: str = ""  # e.g. X-Forwarded-User: the reviewer, set by your auth proxy
    proxy_secret: SecretStr | None = None  # environment only
    proxy_secret_header: str = "X-Stream-Eval-Proxy-Secret"
    trusted_proxies: list[str] = Field(default_factory=list)  # addresses or networks
    admins: list[str] = Field(default_factory=list)  # proxy: the users who are admins
    session_key: SecretStr | None = None  # environment only; unset: a new one per start
    session_hours: float = Field(default=12.0, gt=0)
    cookie_secure: bool = True  # only ever sent over HTTPS (and to localhost)

    @model_validator(mode="after")
    def _auth_complete(self) -> ReviewSettings:
        if self.auth == "proxy":
            if not self.user_header:
                raise ValueError("review.auth = 'proxy' needs review.user_header")
            if not self.proxy_secret and not self.trusted_proxies:
                raise ValueError(
                    "review.auth = 'proxy' needs proof that a request came through the proxy: "
                    "review.proxy_secret (STREAM_EVAL_REVIEW__PROXY_SECRET) or "
                    "review.trusted_proxies"
                )
            for net in self.trusted_proxies:
                try:
                    ipaddress.ip_network(net, strict=False)
                except ValueError:
                    raise ValueError(f"review.trusted_proxies: not an address: {net!r}") from None
        return self

    # whole units as items: sessions (abandoned_after_failure; rephrase_burst: at least
    # session_min_rephrases rephrases) and agent runs that failed a run check
    sessions: bool = True
    session_min_rephrases: int = Field(default=2, ge=1)
    agent_runs: bool = True

    _checks_known = field_validator("failed_checks")(_known_checks)


class AssemblySettings(_Model):
    """Whole traces from OTLP spans and log records (the tail-sampling processor's model):
    a trace is emitted ``decision_wait_seconds`` after its root span was read, or
    ``max_wait_seconds`` after its first piece when no root comes; pieces read after that
    are joined to it and it is emitted again (``revision_wait_seconds``). Bounded per trace
    and per worker; beyond the worker's bounds the oldest traces are emitted early."""

    decision_wait_seconds: float = Field(default=5.0, ge=0)
    max_wait_seconds: float = Field(default=60.0, gt=0)
    # Pieces read after their trace was emitted (log records exported after their spans)
    # wait this long after the first of them for the others, then are joined to the trace
    # as it was emitted (read back from the traces topic) and the whole trace is emitted
    # again: one revision for a late batch, not one per record.
    revision_wait_seconds: float = Field(default=5.0, ge=0)
    max_spans_per_trace: int = Field(default=2000, ge=1)
    max_bytes_per_trace: int = Field(default=768 * 1024, ge=1024)  # <= ingest.max_message_bytes
    max_pending_traces: int = Field(default=20000, ge=1)
    max_pending_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    batch_max_messages: int = Field(default=500, ge=1)
    batch_max_seconds: float = Field(default=0.5, gt=0)
    tick_seconds: float = Field(default=0.5, gt=0)  # how often due traces are looked for


class MetricsSettings(_Model):
    """Each worker serves Prometheus metrics on http://host:port/metrics (port 0: off).
    Loopback unless configured: a container or a scrape from another host sets ``host``."""

    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STREAM_EVAL_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    app_id: str = "stream-eval"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    checks: CheckSettings = Field(default_factory=CheckSettings)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    windows: WindowSettings = Field(default_factory=WindowSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    otel: OtelSettings = Field(default_factory=OtelSettings)
    assembly: AssemblySettings = Field(default_factory=AssemblySettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    agent_runs: RunSettings = Field(default_factory=RunSettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    routes: dict[str, RouteSettings] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        given = _config_path.get()
        path = given or os.environ.get("STREAM_EVAL_CONFIG")
        if path:
            if not Path(path).is_file():
                what = "--config" if given else "STREAM_EVAL_CONFIG"
                raise FileNotFoundError(f"{what}={path}: no such file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    _route_checks: dict[str, CheckSettings] = PrivateAttr(default_factory=dict)
    _policy: Policy | None = PrivateAttr(default=None)
    _route_policies: dict[str, Policy] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _assembled_traces_fit(self) -> Settings:
        # An assembled trace is one message on the traces topic: ingest must accept it.
        if self.assembly.max_bytes_per_trace > self.ingest.max_message_bytes:
            raise ValueError(
                f"assembly.max_bytes_per_trace ({self.assembly.max_bytes_per_trace}) must not "
                f"exceed ingest.max_message_bytes ({self.ingest.max_message_bytes})"
            )
        return self

    @model_validator(mode="after")
    def _resolve_route_checks(self) -> Settings:
        # Validated here, at load time, so a typo in a route's overrides fails fast.
        _known_check_settings(self.checks, "checks")
        base = self.checks.model_dump()
        self._route_checks = {
            name: CheckSettings.model_validate({**base, **route.checks})
            for name, route in self.routes.items()
        }
        for name, cfg in self._route_checks.items():
            _known_check_settings(cfg, f"routes.{name}.checks")
        return self

    @model_validator(mode="after")
    def _resolve_route_policies(self) -> Settings:
        base = self.privacy.modes()
        self._policy = Policy.of(self.privacy, base)
        routes = {}
        for name, route in self.routes.items():
            try:
                modes = FieldModes.model_validate({**base.model_dump(), **route.privacy})
            except ValueError as exc:
                raise ValueError(f"routes.{name}.privacy: {exc}") from None
            routes[name] = Policy.of(self.privacy, modes)
        self._route_policies = routes
        hashing = [
            where
            for where, p in [("privacy", self._policy), *routes.items()]
            if "hash" in p.modes.model_dump().values()
        ]
        if hashing and not self.privacy.hash_key:
            raise ValueError(
                f"privacy mode 'hash' ({', '.join(hashing)}) needs a key: set "
                "STREAM_EVAL_PRIVACY__HASH_KEY in the environment"
            )
        return self

    def privacy_for(self, route: str) -> Policy:
        """The privacy policy of a route: its field modes on top of ``[privacy]``."""
        policy = self._route_policies.get(route, self._policy)
        assert policy is not None
        return policy

    def checks_for(self, route: str) -> CheckSettings:
        """The check thresholds for a route: its overrides on top of the defaults."""
        return self._route_checks.get(route, self.checks)

    def rubrics_for(self, route: str) -> list[str]:
        r = self.routes.get(route)
        if r is not None and r.rubrics is not None:
            return r.rubrics
        return self.judge.rubrics

    def judge_budget_for(self, route: str) -> float | None:
        r = self.routes.get(route)
        if r is not None and r.judge_daily_budget_usd is not None:
            return r.judge_daily_budget_usd
        return self.judge.daily_budget_usd

    def sample_rate_for(self, route: str) -> float:
        r = self.routes.get(route)
        if r is not None and r.sample_rate is not None:
            return r.sample_rate
        return self.sampling.default_rate


# The TOML file given to ``load_settings`` (else STREAM_EVAL_CONFIG names it), for the
# settings being built: the process environment is never written.
_config_path: ContextVar[str | None] = ContextVar("stream_eval_config_path", default=None)


def load_settings(config_path: str | None = None, **overrides: Any) -> Settings:
    """Load settings from an optional TOML file (``config_path``, else the file that
    STREAM_EVAL_CONFIG names), the environment and overrides."""
    token = _config_path.set(config_path)
    try:
        return Settings(**overrides)
    finally:
        _config_path.reset(token)
