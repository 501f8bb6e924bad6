-- stream-eval ClickHouse schema. One file for chdb and for a ClickHouse server.
-- {db} is replaced by clickhouse.database. Tables are ReplacingMergeTree keyed by
-- the record's identity, so a replay after a crash rewrites rows instead of adding
-- them: query with FINAL (or through the *_v views) for exact counts.

CREATE DATABASE IF NOT EXISTS {db};

-- One row per LLM request (GenAI span) that passed validation.
CREATE TABLE IF NOT EXISTS {db}.traces
(
    trace_id        String,
    span_id         String,
    route           LowCardinality(String),
    ts              DateTime64(3, 'UTC'),
    model           LowCardinality(String),
    model_version   LowCardinality(String),
    prompt_id       LowCardinality(String),
    prompt_version  LowCardinality(String),
    provider        LowCardinality(String),
    operation       LowCardinality(String),
    source          LowCardinality(String),
    latency_ms      Nullable(Float64),
    input_tokens    Nullable(UInt32),
    output_tokens   Nullable(UInt32),
    cost_usd        Nullable(Float64),
    finish_reason   LowCardinality(String),
    input_text      String CODEC(ZSTD(3)),
    system_text     String CODEC(ZSTD(3)),  -- system / developer messages (instructions)
    output_text     String CODEC(ZSTD(3)),
    user_id         String,
    session_id      String,
    tenant          LowCardinality(String),
    documents       UInt16,
    documents_json  String CODEC(ZSTD(3)),  -- the retrieved context: [{"id", "content"}]
    tool_calls      UInt16,
    size_bytes      UInt32,
    -- 1: the call's output messages were found nowhere (OTLP: the log records holding its
    -- content never came): no checks, never judged. A revision of the trace that brings
    -- the content replaces this row
    content_missing UInt8,
    failed_checks   Array(LowCardinality(String)),
    -- Every applicable check's result, one element per check (the check_results view
    -- has them as rows).
    check_names     Array(LowCardinality(String)),
    check_passed    Array(UInt8),
    check_scores    Array(Nullable(Float32)),
    check_reasons   Array(String),
    sampled         UInt8,
    sample_reason   LowCardinality(String),
    sample_prob     Float64,  -- its probability of being judged (0: not sampled)
    extra           String CODEC(ZSTD(3)),
    kafka_topic     LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset    UInt64,
    -- The watermark of the trace's input partition just before its Kafka message (the
    -- newest event time read before it): a window that ends, plus the allowed lateness,
    -- at or before it had closed for this trace (the trace is late for that window).
    -- The same on a replay, so window membership never changes.
    wm_at_ingest    DateTime64(3, 'UTC'),
    ingested_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (route, trace_id, span_id)
-- merged column by column (see migrations.sql)
SETTINGS vertical_merge_algorithm_min_rows_to_activate = 1;

-- One row per agent run: an OTLP trace with agent or tool spans (its LLM calls are rows
-- of traces too). A revision of the trace (content that came later) replaces the row.
CREATE TABLE IF NOT EXISTS {db}.agent_runs
(
    trace_id        String,
    route           LowCardinality(String),
    agent           LowCardinality(String),
    ts              DateTime64(3, 'UTC'),
    duration_ms     Float64,
    model_version   LowCardinality(String),  -- of its last LLM call
    prompt_version  LowCardinality(String),
    session_id      String,
    user_id         String,
    tenant          LowCardinality(String),
    steps           UInt16,  -- LLM calls
    tool_steps      UInt16,  -- of them, calls that answered with tool calls only
    tool_calls      UInt32,  -- tool spans (the arrays below keep the first 256)
    tool_names      Array(LowCardinality(String)),
    tool_arguments  Array(String) CODEC(ZSTD(3)),  -- each cut to 1,000 characters
    tool_errors     Array(String),  -- '' for a call that succeeded
    tool_results    Array(String) CODEC(ZSTD(3)),  -- what each returned, cut to 1,000 characters
    task            String CODEC(ZSTD(3)),  -- its first LLM call's user message, cut to 4,000
    final_answer    String CODEC(ZSTD(3)),  -- its last text answer, cut to 4,000 characters
    error           String,  -- an agent span's error (e.g. "Max turns exceeded")
    failed_checks   Array(LowCardinality(String)),
    check_names     Array(LowCardinality(String)),
    check_passed    Array(UInt8),
    check_reasons   Array(String),
    kafka_topic     LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset    UInt64,
    ingested_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (route, trace_id);

-- One row per session: the calls of one session id (its traces, each a turn) until
-- sessions.gap_seconds pass without a turn, closed by the stream's watermark as the SLI
-- windows are (docs/platform/sessions.md). Dimensions are its last turn's; the turn_*
-- arrays hold every turn in order (session_turns has them as rows). Written once when it
-- closes; late_turns (turns read after it closed that fall in it) is refreshed.
CREATE TABLE IF NOT EXISTS {db}.sessions
(
    session_id      String,
    started_at      DateTime64(3, 'UTC'),  -- its first turn
    last_turn_at    DateTime64(3, 'UTC'),  -- its last turn (the SLIs' event time)
    route           LowCardinality(String),  -- of its last turn
    model_version   LowCardinality(String),
    prompt_version  LowCardinality(String),
    routes          Array(LowCardinality(String)),  -- every one seen, first seen first
    model_versions  Array(LowCardinality(String)),
    prompt_versions Array(LowCardinality(String)),
    user_id         String,
    tenant          LowCardinality(String),
    turns           UInt32,
    duration_s      Float64,  -- first turn to last turn
    turn_trace_ids  Array(String),
    turn_ts         Array(DateTime64(3, 'UTC')),
    turn_routes     Array(LowCardinality(String)),
    turn_model_versions Array(LowCardinality(String)),
    turn_prompt_versions Array(LowCardinality(String)),
    turn_similarity Array(Float32),  -- to the turn before (0 for the first)
    turn_rephrase   Array(UInt8),
    turn_failed     Array(UInt8),
    turn_escalated  Array(UInt8),
    rephrases       UInt32,
    failed_turns    UInt32,
    escalated       UInt8,
    abandoned       UInt8,
    abandoned_after_failure UInt8,
    outcome         LowCardinality(String),  -- escalated | abandoned_after_failure | abandoned | completed
    closed_by       LowCardinality(String),  -- gap | max_turns | max_duration
    late            UInt8,  -- 1: every turn was read after the watermark had passed it
    late_turns      UInt32,  -- refreshed: turns read after it closed that fall in it
    watermark       DateTime64(3, 'UTC'),  -- the stream's watermark when it closed
    closed_upto     DateTime64(3, 'UTC'),  -- the closing pass's edge (last turns up to it)
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3),  -- when it closed
    refreshed_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(refreshed_at)
PARTITION BY toYYYYMM(started_at)
ORDER BY (session_id, started_at);

-- The check results of traces written before stream-eval kept them as arrays on the trace
-- row, one row per trace and check: empty on a store created since. Analysts query
-- check_results, the view (migrations.sql) over the traces' check arrays and these rows.
CREATE TABLE IF NOT EXISTS {db}.check_results_before_arrays
(
    trace_id        String,
    span_id         String,
    route           LowCardinality(String),
    ts              DateTime64(3, 'UTC'),
    model_version   LowCardinality(String),
    prompt_version  LowCardinality(String),
    check_name      LowCardinality(String),
    passed          UInt8,
    score           Nullable(Float32),
    reason          String,
    ingested_at     DateTime64(3, 'UTC'),
    wm_at_ingest    DateTime64(3, 'UTC')  -- its trace's (sink/upgrade.py fills it)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (route, check_name, trace_id, span_id);

-- What could not be processed, with the reason and the original bytes (base64).
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    stage           LowCardinality(String),
    kafka_topic     LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset    UInt64,
    item            Int32,
    items           UInt32 DEFAULT 1,  -- bad items it stands for (> 1: too_many_bad_items)
    reason          LowCardinality(String),
    detail          String,
    format          LowCardinality(String),
    route           LowCardinality(String),
    trace_id        String,
    payload_base64  String CODEC(ZSTD(3)),
    payload_bytes   UInt32,
    payload_truncated UInt8,
    message_ts      DateTime64(3, 'UTC'),
    ingested_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
ORDER BY (stage, kafka_topic, kafka_partition, kafka_offset, reason, item);

-- One row per Kafka message read: the accounting ledger.
CREATE TABLE IF NOT EXISTS {db}.ingest_messages
(
    kafka_topic     LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset    UInt64,
    message_ts      DateTime64(3, 'UTC'),
    format          LowCardinality(String),
    bytes           UInt32,
    traces          UInt32,
    dead_letters    UInt32,
    skipped_spans   UInt32,
    ingested_at     DateTime64(3, 'UTC'),
    -- when its batch's write reached this table, the last of the batch (set by ClickHouse)
    written_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
ORDER BY (kafka_topic, kafka_partition, kafka_offset);

-- One row per (sampled trace, applicable rubric): scored, failed (also dead-lettered)
-- or skipped (budget). Keyed so that a replay neither re-judges nor double-counts.
CREATE TABLE IF NOT EXISTS {db}.judge_results
(
    trace_id            String,  -- a session's: its session id (unit_ids)
    span_id             String,  -- a session's: session@<first turn, unix ms>, a run's: run
    unit                LowCardinality(String) DEFAULT 'call',  -- call, session or run
    route               LowCardinality(String),
    ts                  DateTime64(3, 'UTC'),  -- a session's: its last turn, a run's: its last LLM call
    model               LowCardinality(String),
    model_version       LowCardinality(String),
    prompt_id           LowCardinality(String),
    prompt_version      LowCardinality(String),
    rubric              LowCardinality(String),
    rubric_version      LowCardinality(String),
    rubric_versions     LowCardinality(String),  -- name@version of each rubric the route is judged on
    judge_model         LowCardinality(String),
    judge_model_version LowCardinality(String),
    status              LowCardinality(String),
    score               Nullable(Float32),
    scale_min           UInt8,
    scale_max           UInt8,
    passed              Nullable(UInt8),
    reason              String,
    error               LowCardinality(String),
    detail              String,
    attempts            UInt16,
    input_tokens        UInt32,
    output_tokens       UInt32,
    cost_usd            Float64,
    latency_ms          Float64,  -- in HTTP calls to the endpoint (all attempts)
    queue_ms            Float64,  -- waiting for the rate limiter before them
    sample_reason       LowCardinality(String),
    sample_prob         Float64 DEFAULT 1,  -- the trace's probability of being judged
    requested_at        DateTime64(3, 'UTC'),
    judged_at           DateTime64(3, 'UTC'),
    kafka_partition     UInt32,  -- of the judge request (its share of limits and budget)
    inserted_at         DateTime64(3, 'UTC') DEFAULT now64(3)  -- set by ClickHouse
)
ENGINE = ReplacingMergeTree(judged_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (route, rubric, rubric_version, judge_model, trace_id, span_id);

-- User feedback events as the apps sent them, one row per feedback_id (the first one
-- read: a re-sent or replayed event is not written again). The join to the trace is
-- the view feedback_v, so feedback joins its trace whatever the arrival order.
-- Should two rows of one feedback_id be written all the same (two workers reading
-- copies on different partitions at once), the merge keeps the first read, never the
-- latest: first_read_key is largest for the earliest ingested_at (when the worker read
-- the event), then the lower partition, then the lower offset. A store of an earlier
-- version, whose merges kept the latest, is upgraded when it opens (sink/upgrade.py).
CREATE TABLE IF NOT EXISTS {db}.feedback
(
    feedback_id     String,
    trace_id        String,
    span_id         String,
    kind            LowCardinality(String),
    value           Nullable(Float64),
    user_id         String,
    ts              DateTime64(3, 'UTC'),
    horizon_s       Float64,  -- feedback.horizon_hours when it was read
    kafka_topic     LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset    UInt64,
    ingested_at     DateTime64(3, 'UTC'),
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3),  -- set by ClickHouse
    first_read_key  UInt256 MATERIALIZED
        bitShiftLeft(toUInt256(bitNot(toUInt64(toUnixTimestamp64Milli(ingested_at)))), 96)
        + bitShiftLeft(toUInt256(bitNot(kafka_partition)), 64)
        + toUInt256(bitNot(kafka_offset))
)
ENGINE = ReplacingMergeTree(first_read_key)
ORDER BY feedback_id;

-- Ingest progress: per batch and input partition, the offsets read and the watermark
-- (newest event time) after them. Window closing reads the watermarks; a restarted or
-- rebalanced worker reads the watermark as it was before the offset it resumes at.
CREATE TABLE IF NOT EXISTS {db}.stream_progress
(
    kafka_topic     LowCardinality(String),
    kafka_partition UInt32,
    first_offset    UInt64,
    last_offset     UInt64,
    watermark       DateTime64(3, 'UTC'),
    ingested_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
ORDER BY (kafka_topic, kafka_partition, first_offset);

-- When each window was closed (one row per window, for every slice).
CREATE TABLE IF NOT EXISTS {db}.window_closes
(
    window_kind     LowCardinality(String),
    window_start    DateTime('UTC'),
    window_end      DateTime('UTC'),
    watermark       DateTime64(3, 'UTC'),
    closed_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (window_kind, window_start);

-- Closed SLI windows (tumbling and hopping), closed when the watermark (the minimum
-- over the input partitions) passes window_end + the allowed lateness. Numerators and
-- denominators, as in sli_minute, of what the window held when it closed; late_<counter>
-- counts, for every counter, what reached it afterwards (refreshed by the closer), so
-- each counter plus its late_<counter> equals sli_minute over the window (late_feedback,
-- kept for earlier readers, is late_feedback_n). The judge's counters are in
-- judge_sli_windows, per judge.
-- Every window is closed by time, empty or not (window_closes); a slice has a row once
-- it has a trace in the window, on time or late. Latency as a histogram (edges in
-- stream_eval.windows.sql).
-- The counter columns are generated from stream_eval.sli_registry; the closer's INSERT
-- names its columns, so their order here is free.
CREATE TABLE IF NOT EXISTS {db}.sli_windows
(
    window_kind        LowCardinality(String),
    window_start       DateTime('UTC'),
    window_end         DateTime('UTC'),
    route              LowCardinality(String),
    model_version      LowCardinality(String),
    prompt_version     LowCardinality(String),
    {sli_counter_ddl},
    latency_hist       Array(UInt64),
    latency_p50_ms     Nullable(Float64),
    latency_p95_ms     Nullable(Float64),
    {sli_late_counter_ddl},
    late_feedback      UInt64,
    closed_at          DateTime64(3, 'UTC'),
    refreshed_at       DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(refreshed_at)
ORDER BY (window_kind, route, model_version, prompt_version, window_start);

-- The judge's closed SLI windows, per slice and judge (judge_model, the version its
-- provider served, the versions of the rubrics the route is judged on), closed with the
-- slice windows (window_closes). A result counts in its window when ClickHouse had it at
-- the close; late_<counter> counts what came after, so each counter plus its
-- late_<counter> equals judge_sli_minute over the window. A change of judge starts new
-- rows: a window that spans it has a row for each judge. A row exists once a result of
-- that judge is in the window.
CREATE TABLE IF NOT EXISTS {db}.judge_sli_windows
(
    window_kind         LowCardinality(String),
    window_start        DateTime('UTC'),
    window_end          DateTime('UTC'),
    route               LowCardinality(String),
    model_version       LowCardinality(String),
    prompt_version      LowCardinality(String),
    judge_model         LowCardinality(String),
    judge_model_version LowCardinality(String),
    rubric_versions     LowCardinality(String),
    {judge_counter_ddl},
    {judge_late_counter_ddl},
    closed_at           DateTime64(3, 'UTC'),
    refreshed_at        DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(refreshed_at)
ORDER BY (window_kind, route, model_version, prompt_version, judge_model, judge_model_version,
          rubric_versions, window_start);

CREATE OR REPLACE VIEW {db}.traces_v AS SELECT * FROM {db}.traces FINAL;
CREATE OR REPLACE VIEW {db}.agent_runs_v AS SELECT * FROM {db}.agent_runs FINAL;
CREATE OR REPLACE VIEW {db}.sessions_v AS SELECT * FROM {db}.sessions FINAL;
CREATE OR REPLACE VIEW {db}.dead_letters_v AS SELECT * FROM {db}.dead_letters FINAL;
CREATE OR REPLACE VIEW {db}.ingest_messages_v AS SELECT * FROM {db}.ingest_messages FINAL;
CREATE OR REPLACE VIEW {db}.judge_results_v AS SELECT * FROM {db}.judge_results FINAL;
CREATE OR REPLACE VIEW {db}.sli_windows_v AS SELECT * FROM {db}.sli_windows FINAL;
CREATE OR REPLACE VIEW {db}.judge_sli_windows_v AS SELECT * FROM {db}.judge_sli_windows FINAL;

-- OTLP trace assembly (topics.otlp_assembly): one row per trace emitted whole, so that a
-- replay (restart, rebalance, the intake re-splitting a request after a crash) does not
-- emit a trace again, and pieces that are new after it are known to be late. Pieces read
-- late (log records exported after their spans) are joined to the emitted trace, read
-- back from the traces topic where this row says it went, and the whole trace is emitted
-- again as a revision; the revision's row replaces this one, with every piece and count
-- of the whole trace. Kept longer than the assembly topic keeps its messages.
CREATE TABLE IF NOT EXISTS {db}.assembled_traces
(
    trace_id        String,
    kafka_topic     LowCardinality(String),
    kafka_partition UInt32,
    first_offset    UInt64,
    last_offset     UInt64,
    pieces          UInt32,
    piece_digests   Array(String),  -- each piece's identity: a piece read again is a replay
    spans           UInt32,
    duplicate_spans UInt32,  -- the same span read twice (an exporter's retry): kept once
    log_records     UInt32,
    logs_joined     UInt32,  -- log records attached to their span as span events
    orphan_logs     UInt32,  -- log records whose span is not in the trace (counted, dropped)
    llm_spans       UInt32,  -- LLM calls in it (0: not emitted, nothing to evaluate)
    has_root        UInt8,
    reason          LowCardinality(String),  -- root_wait | no_root | evicted
    revision        UInt32,  -- 0: emitted first, n: the nth revision (late pieces joined)
    traces_partition Int32 DEFAULT -1,  -- where on the traces topic this emission went
    traces_offset   Int64 DEFAULT -1,  -- (-1: not emitted, no LLM call in it, or unknown)
    wait_s          Float64,  -- first piece read -> emitted
    emitted_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(emitted_at)
ORDER BY trace_id;

-- Human review. review_queue: one row per (trace, LLM call) worth a human look, added by
-- the worker's leader (see review/queue.py), never the same one twice.
CREATE TABLE IF NOT EXISTS {db}.review_queue
(
    trace_id            String,
    span_id             String,
    route               LowCardinality(String),
    model_version       LowCardinality(String),
    prompt_version      LowCardinality(String),
    ts                  DateTime64(3, 'UTC'),
    reason              LowCardinality(String),  -- judge_fail | thumbs_down | failed_check | calibration
    detail              String,
    rubric              LowCardinality(String),  -- the rubric to label ('' : the reviewer picks)
    reviewers_required  UInt8,
    enqueued_at         DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(enqueued_at)
ORDER BY (trace_id, span_id);

-- Who holds which item, until when (a release writes reserved_until = now).
CREATE TABLE IF NOT EXISTS {db}.review_reservations
(
    trace_id        String,
    span_id         String,
    reviewer        String,
    reserved_until  DateTime64(3, 'UTC'),
    at              DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(at)
ORDER BY (trace_id, span_id, reviewer);

-- Human labels, append-only (a new label never overwrites one: the latest per reviewer
-- counts), each with the judge result it is compared with. Also on topics.labels.
CREATE TABLE IF NOT EXISTS {db}.review_labels
(
    label_id            String,
    trace_id            String,
    span_id             String,
    route               LowCardinality(String),
    model_version       LowCardinality(String),
    prompt_version      LowCardinality(String),
    reason              LowCardinality(String),
    reviewer            String,
    rubric              LowCardinality(String),
    rubric_version      LowCardinality(String),
    verdict             LowCardinality(String),  -- pass | fail
    score               Nullable(Float32),  -- on the rubric's scale
    corrected_answer    String CODEC(ZSTD(3)),
    note                String,
    judge_model         LowCardinality(String),
    judge_model_version LowCardinality(String),
    judge_score         Nullable(Float32),
    judge_passed        Nullable(UInt8),
    source              LowCardinality(String),  -- ui | import
    labelled_at         DateTime64(3, 'UTC'),
    inserted_at         DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY label_id;

-- Golden dataset promotions: which reviewed production trace became which example, in
-- which version of which dataset, when.
CREATE TABLE IF NOT EXISTS {db}.golden_promotions
(
    dataset         LowCardinality(String),
    version         UInt32,
    example_id      String,
    trace_id        String,
    span_id         String,
    label_id        String,
    route           LowCardinality(String),
    promoted_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(promoted_at)
ORDER BY (dataset, example_id);

-- Offline runs of a golden dataset (stream-eval offline run): one row per example and run,
-- scored by the same checks and judge rubrics as the stream.
CREATE TABLE IF NOT EXISTS {db}.offline_results
(
    run_id          String,
    dataset         LowCardinality(String),
    dataset_version UInt32,
    example_id      String,
    route           LowCardinality(String),
    passed          UInt8,
    failures        Array(String),
    checks          Array(LowCardinality(String)),  -- the checks that applied
    failed_checks   Array(LowCardinality(String)),
    judge_json      String,
    source          LowCardinality(String),  -- offline
    ran_at          DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ran_at)
ORDER BY (dataset, run_id, example_id);

-- The review app's audit log (review/web.py): who signed in, opened, labelled or erased
-- what, and every request refused (401, 403), with the peer address.
CREATE TABLE IF NOT EXISTS {db}.review_audit
(
    at       DateTime64(3, 'UTC'),
    user     String,
    action   LowCardinality(String),  -- signin, signin_failed, signout, open, label, erase, denied
    trace_id String,
    span_id  String,
    detail   String,
    addr     String
)
ENGINE = MergeTree
ORDER BY (at, user);

-- Erasures (stream-eval erase, privacy/erase.py): who erased what and when. The value is
-- kept only as its SHA-256, with the trace and session ids it covered (no personal data),
-- which golden promotions leave out from then on, and the rows removed per table.
CREATE TABLE IF NOT EXISTS {db}.erasures
(
    erasure_id   String,
    erased_at    DateTime64(3, 'UTC'),
    erased_by    String,
    kind         LowCardinality(String),  -- user_id, session_id or trace_id
    value_digest String,
    trace_ids    Array(String),
    session_ids  Array(String),
    rows_removed Map(String, UInt64)
)
ENGINE = MergeTree
ORDER BY (erased_at, erasure_id);

-- The drift canary (judge/canary.py): each run's scores of the fixed canary set, a row per
-- item and rubric, and its decision per rubric (a drift: scores of identical inputs moved
-- one way, beyond the run-to-run variation of the runs before). Kept: the runs are few.
CREATE TABLE IF NOT EXISTS {db}.judge_canary
(
    run_id              String,
    run_at              DateTime64(3, 'UTC'),
    set_version         LowCardinality(String),
    unit                LowCardinality(String),
    trace_id            String,
    span_id             String,
    route               LowCardinality(String),
    rubric              LowCardinality(String),
    rubric_version      LowCardinality(String),
    judge_model         LowCardinality(String),
    judge_model_version LowCardinality(String),
    score               Float64,
    passed              UInt8
)
ENGINE = MergeTree
ORDER BY (set_version, judge_model, rubric, run_at, trace_id, span_id);

CREATE TABLE IF NOT EXISTS {db}.judge_canary_runs
(
    run_id         String,
    run_at         DateTime64(3, 'UTC'),
    set_version    LowCardinality(String),
    judge_model    LowCardinality(String),
    rubric         LowCardinality(String),
    rubric_version LowCardinality(String),
    items          UInt32,
    mean_shift     Float64,
    up             UInt32,
    down           UInt32,
    p_value        Nullable(Float64),
    drift          UInt8,
    baseline_runs  UInt32,
    cost_usd       Float64
)
ENGINE = MergeTree
ORDER BY (set_version, judge_model, rubric, run_at);

-- That the statements above are applied (sink/schema.py): a fingerprint of them and of the
-- upgrades, so that a store already up to date opens without running them again.
CREATE TABLE IF NOT EXISTS {db}.schema_applied
(
    fingerprint String,
    applied_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY fingerprint;
