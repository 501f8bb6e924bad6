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
ALTER TABLE {db}.sli_windows ADD COLUMN IF NOT EXISTS late_feedback UInt64 AFTER late_traces;
ALTER TABLE {db}.sli_windows ADD COLUMN IF NOT EXISTS late_judge UInt64 AFTER late_feedback;
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

-- check_results, one row per trace and check, derived inside ClickHouse from each insert
-- into traces (its columns exist from here on). The worker writes a trace's checks once,
-- as arrays on its row; the rows analysts query stay where they were. A replayed trace
-- is inserted again and replaces its rows here as it does in traces (same keys). Never
-- replaced at start (a worker writing meanwhile would lose rows): a new definition
-- gets a new name.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.check_results_from_traces TO {db}.check_results AS
SELECT trace_id, span_id, route, ts, model_version, prompt_version,
       check_name, passed, score, reason, ingested_at
FROM {db}.traces
ARRAY JOIN check_names AS check_name, check_passed AS passed, check_scores AS score,
           check_reasons AS reason;
