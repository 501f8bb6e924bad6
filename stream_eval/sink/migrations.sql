-- Upgrades of a store created by an earlier stream-eval: the columns added since, so that
-- CREATE TABLE IF NOT EXISTS (which leaves an existing table as it is) and the inserts of
-- this version agree. Each statement is a no-op on a store created by this version.
-- Views are CREATE OR REPLACE, so they always follow the current definitions.

ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS wm_at_ingest DateTime64(3, 'UTC') AFTER kafka_offset;
ALTER TABLE {db}.judge_results ADD COLUMN IF NOT EXISTS queue_ms Float64 AFTER latency_ms;
ALTER TABLE {db}.judge_results ADD COLUMN IF NOT EXISTS kafka_partition UInt32 AFTER judged_at;
ALTER TABLE {db}.judge_results ADD COLUMN IF NOT EXISTS inserted_at DateTime64(3, 'UTC') DEFAULT now64(3);
ALTER TABLE {db}.feedback ADD COLUMN IF NOT EXISTS horizon_s Float64 DEFAULT 86400 AFTER ts;
ALTER TABLE {db}.feedback ADD COLUMN IF NOT EXISTS inserted_at DateTime64(3, 'UTC') DEFAULT now64(3);
ALTER TABLE {db}.ingest_messages ADD COLUMN IF NOT EXISTS written_at DateTime64(3, 'UTC') DEFAULT now64(3);
ALTER TABLE {db}.sli_windows ADD COLUMN IF NOT EXISTS late_feedback UInt64 AFTER late_traces;
ALTER TABLE {db}.sli_windows ADD COLUMN IF NOT EXISTS refreshed_at DateTime64(3, 'UTC') AFTER closed_at;
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS system_text String CODEC(ZSTD(3)) AFTER input_text;
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS user_id String AFTER output_text;
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS session_id String AFTER user_id;
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS tenant LowCardinality(String) AFTER session_id;
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS documents_json String CODEC(ZSTD(3)) AFTER documents;
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS sample_prob Float64 AFTER sample_reason;
ALTER TABLE {db}.judge_results ADD COLUMN IF NOT EXISTS sample_prob Float64 DEFAULT 1 AFTER sample_reason;
{sli_counter_migrations};
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS check_names Array(LowCardinality(String)) AFTER failed_checks;
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS check_passed Array(UInt8) AFTER check_names;
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS check_scores Array(Nullable(Float32)) AFTER check_passed;
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS check_reasons Array(String) AFTER check_scores;
ALTER TABLE {db}.dead_letters ADD COLUMN IF NOT EXISTS items UInt32 DEFAULT 1 AFTER item;
ALTER TABLE {db}.traces ADD COLUMN IF NOT EXISTS content_missing UInt8 AFTER size_bytes;
ALTER TABLE {db}.assembled_traces ADD COLUMN IF NOT EXISTS revision UInt32 AFTER reason;
ALTER TABLE {db}.assembled_traces ADD COLUMN IF NOT EXISTS traces_partition Int32 DEFAULT -1 AFTER revision;
ALTER TABLE {db}.assembled_traces ADD COLUMN IF NOT EXISTS traces_offset Int64 DEFAULT -1 AFTER traces_partition;
ALTER TABLE {db}.agent_runs ADD COLUMN IF NOT EXISTS tool_results Array(String) CODEC(ZSTD(3)) AFTER tool_errors;
ALTER TABLE {db}.agent_runs ADD COLUMN IF NOT EXISTS task String CODEC(ZSTD(3)) AFTER tool_results;
ALTER TABLE {db}.judge_results ADD COLUMN IF NOT EXISTS unit LowCardinality(String) DEFAULT 'call' AFTER span_id;
ALTER TABLE {db}.judge_results ADD COLUMN IF NOT EXISTS rubric_versions LowCardinality(String) AFTER rubric_version;
{judge_counter_migrations};

-- check_results, one row per trace and check: a view over the traces' check arrays (and
-- the rows of traces written before those, kept in check_results_before_arrays). The
-- worker writes a trace's checks once; ClickHouse stores them once. The rows analysts
-- query keep their columns and, from the newest version of each trace, count once
-- (``FROM check_results`` needs no FINAL). Each row has its trace's ``wm_at_ingest``, so
-- the windows tell on-time checks from late ones without joining the traces. A store whose check_results is still the
-- table (with the materialized view that filled it) is turned into this when it opens
-- (sink/upgrade.py). Storing the rows a second time cost the embedded worker about 13%
-- of its rate (README, Benchmark).
CREATE OR REPLACE VIEW {db}.check_results AS
SELECT trace_id, span_id, route, ts, model_version, prompt_version,
       check_name, passed, score, reason, ingested_at, wm_at_ingest
FROM {db}.traces FINAL
ARRAY JOIN check_names AS check_name, check_passed AS passed, check_scores AS score,
           check_reasons AS reason
UNION ALL
SELECT trace_id, span_id, route, ts, model_version, prompt_version,
       check_name, passed, score, reason, ingested_at, wm_at_ingest
FROM {db}.check_results_before_arrays FINAL;
CREATE OR REPLACE VIEW {db}.check_results_v AS SELECT * FROM {db}.check_results;

-- session_turns: one row per turn of a closed session, from the sessions' turn arrays,
-- with the session's outcome. (The SLIs' per-turn counters count these rows.)
CREATE OR REPLACE VIEW {db}.session_turns AS
SELECT session_id, started_at, last_turn_at, closed_by, outcome, inserted_at,
       turn AS turn_index, trace_id, ts, route, model_version, prompt_version,
       similarity, rephrase, failed, escalated, turn = turns AS last
FROM
(
    SELECT session_id, started_at, last_turn_at, closed_by, outcome, inserted_at, turns,
           turn_trace_ids, turn_ts, turn_routes, turn_model_versions, turn_prompt_versions,
           turn_similarity, turn_rephrase, turn_failed, turn_escalated
    FROM {db}.sessions FINAL
)
ARRAY JOIN arrayEnumerate(turn_trace_ids) AS turn, turn_trace_ids AS trace_id,
           turn_ts AS ts, turn_routes AS route, turn_model_versions AS model_version,
           turn_prompt_versions AS prompt_version, turn_similarity AS similarity,
           turn_rephrase AS rephrase, turn_failed AS failed, turn_escalated AS escalated;

-- Merges of the traces column by column (vertical), whatever their size: a merge holds one
-- column of its parts in memory at a time instead of all of them, which lowered the
-- embedded worker's peak by about 70 MB (README, Benchmark).
ALTER TABLE {db}.traces MODIFY SETTING vertical_merge_algorithm_min_rows_to_activate = 1;
