-- SLI views: exact, computed from the deduplicated base tables (FINAL), sliced by
-- route x model_version x prompt_version. Rates carry numerators and denominators
-- (`*_fail` / `*_n`, `thumbs_down` / `traces`...) so analysts can re-aggregate any
-- window or slice correctly: sum the numerators, sum the denominators, divide.
-- Feedback and judge scores count in the window of the trace they are about, so a
-- window's thumbs-down rate converges as late feedback arrives. A closed session counts
-- in the minute of its last turn, each of its turns in its own.

-- Feedback joined to its trace (the trace's first span, by start time), whatever came
-- first: join_status is joined, expired (later than horizon_s after the trace) or
-- unknown_trace (no such trace in the traces table yet, or ever).
CREATE OR REPLACE VIEW {db}.feedback_v AS
SELECT
    f.feedback_id AS feedback_id, f.trace_id AS trace_id, f.span_id AS span_id,
    f.kind AS kind, f.value AS value, f.user_id AS user_id, f.ts AS ts,
    multiIf(t.trace_id = '', 'unknown_trace',
            toFloat64(f.ts) - toFloat64(t.trace_ts) > f.horizon_s, 'expired',
            'joined') AS join_status,
    t.route AS route, t.model_version AS model_version, t.prompt_version AS prompt_version,
    t.trace_ts AS trace_ts,
    if(t.trace_id = '', 0, toFloat64(f.ts) - toFloat64(t.trace_ts)) AS delay_s,
    f.horizon_s AS horizon_s,
    f.kafka_topic AS kafka_topic, f.kafka_partition AS kafka_partition,
    f.kafka_offset AS kafka_offset, f.ingested_at AS ingested_at, f.inserted_at AS inserted_at
FROM {db}.feedback AS f FINAL
LEFT JOIN
(
    SELECT trace_id, argMin(route, ts) AS route, argMin(model_version, ts) AS model_version,
           argMin(prompt_version, ts) AS prompt_version, min(ts) AS trace_ts
    FROM {db}.traces FINAL
    WHERE trace_id IN (SELECT trace_id FROM {db}.feedback)
    GROUP BY trace_id
) AS t ON f.trace_id = t.trace_id;

-- The counter columns (and their aggregates) are generated from
-- stream_eval.sli_registry, the one definition of every SLI and counter.
CREATE OR REPLACE VIEW {db}.sli_minute AS
SELECT
    window_start, route, model_version, prompt_version,
    t.latency_p50_ms AS latency_p50_ms, t.latency_p95_ms AS latency_p95_ms,
    {sli_counter_select}
FROM
(
    SELECT toStartOfMinute(ts) AS window_start, route, model_version, prompt_version,
           quantileIf(0.5)(latency_ms, latency_ms IS NOT NULL) AS latency_p50_ms,
           quantileIf(0.95)(latency_ms, latency_ms IS NOT NULL) AS latency_p95_ms,
           {sli_trace_counters}
    FROM {db}.traces FINAL
    GROUP BY window_start, route, model_version, prompt_version
) AS t
LEFT JOIN
(
    SELECT toStartOfMinute(ts) AS window_start, route, model_version, prompt_version,
           {sli_check_counters}
    FROM {db}.check_results
    GROUP BY window_start, route, model_version, prompt_version
) AS c USING (window_start, route, model_version, prompt_version)
LEFT JOIN
(
    SELECT toStartOfMinute(trace_ts) AS window_start, route, model_version, prompt_version,
           {sli_feedback_counters}
    FROM {db}.feedback_v
    WHERE join_status = 'joined'
    GROUP BY window_start, route, model_version, prompt_version
) AS f USING (window_start, route, model_version, prompt_version)
LEFT JOIN
(
    SELECT toStartOfMinute(last_turn_at) AS window_start, route, model_version, prompt_version,
           {sli_session_counters}
    FROM {db}.sessions FINAL
    GROUP BY window_start, route, model_version, prompt_version
) AS s USING (window_start, route, model_version, prompt_version)
LEFT JOIN
(
    SELECT toStartOfMinute(ts) AS window_start, route, model_version, prompt_version,
           {sli_turn_counters}
    FROM {db}.session_turns
    GROUP BY window_start, route, model_version, prompt_version
) AS u USING (window_start, route, model_version, prompt_version);

-- The judge's counters, per minute, slice and judge: judge_model, the version its
-- provider served (empty on a failed call) and the versions of the rubrics the route is
-- judged on. A judge SLI is read within one judge, so a change of judge is a new series.
CREATE OR REPLACE VIEW {db}.judge_sli_minute AS
SELECT toStartOfMinute(ts) AS window_start, route, model_version, prompt_version,
       judge_model, judge_model_version, rubric_versions,
       {sli_judge_counters}
FROM {db}.judge_results FINAL
GROUP BY window_start, route, model_version, prompt_version, judge_model, judge_model_version,
         rubric_versions;

-- Human labels against the judge, per day, judge model and rubric version: the newest
-- label of each reviewer on each (trace, call, rubric) that the judge scored.
CREATE OR REPLACE VIEW {db}.judge_agreement_daily AS
SELECT toDate(labelled_at) AS day, judge_model, judge_model_version, rubric, rubric_version,
       count() AS labels,
       countIf((verdict = 'pass') = (judge_passed = 1)) AS agree,
       countIf(verdict = 'pass') AS human_pass,
       countIf(judge_passed = 1) AS judge_pass,
       countIf(verdict = 'pass' AND judge_passed = 1) AS both_pass
FROM
(
    SELECT * FROM {db}.review_labels FINAL
    WHERE judge_passed IS NOT NULL
    ORDER BY labelled_at DESC
    LIMIT 1 BY trace_id, span_id, rubric, reviewer
)
GROUP BY day, judge_model, judge_model_version, rubric, rubric_version;

-- Offline vs online, per day, route and check: the failure rate of the check in
-- production and in the offline runs of that day, and the gap (offline - online).
CREATE OR REPLACE VIEW {db}.online_offline_divergence AS
SELECT o.day AS day, o.route AS route, o.metric AS metric,
       o.online_rate AS online_fail_rate, f.offline_rate AS offline_fail_rate,
       f.offline_rate - o.online_rate AS gap, o.online_n AS online_n, f.offline_n AS offline_n
FROM
(
    SELECT toDate(ts) AS day, route, check_name AS metric,
           countIf(passed = 0) / count() AS online_rate, count() AS online_n
    FROM {db}.check_results
    GROUP BY day, route, metric
) AS o
INNER JOIN
(
    SELECT toDate(ran_at) AS day, route, metric,
           countIf(has(failed_checks, metric)) / count() AS offline_rate, count() AS offline_n
    FROM {db}.offline_results FINAL ARRAY JOIN checks AS metric
    GROUP BY day, route, metric
) AS f USING (day, route, metric);
