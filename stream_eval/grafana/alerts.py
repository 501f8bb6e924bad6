"""Grafana alerting provisioning: rules, contact point, notification policy, template.

``build_alerting(settings)`` returns ``{file name: document}`` for
``grafana/provisioning/alerting/`` (Grafana file provisioning, ``apiVersion: 1``).

Each rule's query (refId ``A``) returns one row per slice, with string columns
``route``, ``model_version`` and ``prompt_version`` and a number ``value``, in table
format. Grafana turns each row into its own alert instance, labelled with those
columns (a multi-dimensional rule). ``B`` reduces A: a number passes through
unchanged. ``C`` is the threshold and the rule's condition. A query that returns no
rows (no slice has enough traffic) is ``noDataState: OK``.

Grafana substitutes environment variables (``$VAR``) in provisioning files: in labels
and in contact point settings, not in query models or annotations. So labels,
settings and the notification template use no ``$``. Annotations use ``$labels`` and
``$values`` as Grafana's alert templating intends.
"""

from __future__ import annotations

from typing import Any

from stream_eval.config import Settings
from stream_eval.grafana import queries as q
from stream_eval.grafana.dashboards import (
    DATASOURCE_UID,
    JUDGE_UID,
    SLIS_UID,
    judge_panel_ids,
    sli_panel_ids,
)
from stream_eval.grafana.macros import PLUGIN, PLUGIN_VERSION

ORG_ID = 1
FOLDER = "stream-eval"
TEAM = "llm-platform"
CONTACT_POINT = "stream-eval on-call"
TEMPLATE_NAME = "stream-eval"
EXPR_UID = "__expr__"
SLICE_LABELS = "{{ $labels.route }} / {{ $labels.model_version }} / {{ $labels.prompt_version }}"
# A judge SLI's instance is per judge too (queries.JUDGE_KEYS are its labels).
JUDGE_LABELS = (
    "judge {{ $labels.judge_model }} ({{ $labels.judge_model_version }}), rubrics "
    "{{ $labels.rubric_versions }}"
)


def _query(sql: str, window_s: int) -> dict[str, Any]:
    return {
        "refId": "A",
        "relativeTimeRange": {"from": window_s, "to": 0},
        "datasourceUid": DATASOURCE_UID,
        "model": {
            "refId": "A",
            "datasource": {"type": PLUGIN, "uid": DATASOURCE_UID},
            "editorType": "sql",
            "format": 1,  # table: one row per slice -> one alert instance per slice
            "queryType": "table",
            "pluginVersion": PLUGIN_VERSION,
            "rawSql": sql,
            "intervalMs": 1000,
            "maxDataPoints": 43200,
        },
    }


def _expression(ref_id: str, model: dict[str, Any]) -> dict[str, Any]:
    return {
        "refId": ref_id,
        "relativeTimeRange": {"from": 0, "to": 0},
        "datasourceUid": EXPR_UID,
        "model": {
            "refId": ref_id,
            "datasource": {"type": EXPR_UID, "uid": EXPR_UID},
            "intervalMs": 1000,
            "maxDataPoints": 43200,
            **model,
        },
    }


def _data(sql: str, window_s: int, op: str, threshold: float) -> list[dict[str, Any]]:
    return [
        _query(sql, window_s),
        _expression(
            "B",
            {
                "type": "reduce",
                "expression": "A",
                "reducer": "last",
                "settings": {"mode": "dropNN"},
            },
        ),
        _expression(
            "C",
            {
                "type": "threshold",
                "expression": "B",
                "conditions": [
                    {
                        "type": "query",
                        "evaluator": {"type": op, "params": [threshold]},
                        "operator": {"type": "and"},
                        "query": {"params": ["C"]},
                        "reducer": {"type": "last", "params": []},
                    }
                ],
            },
        ),
    ]


def _rule(
    uid: str,
    title: str,
    data: list[dict[str, Any]],
    pending: str,
    labels: dict[str, str],
    annotations: dict[str, str],
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "condition": "C",
        "data": data,
        "noDataState": "OK",
        "execErrState": "Error",
        "for": pending,
        "isPaused": False,
        "labels": {"team": TEAM, **labels},
        "annotations": annotations,
    }


def _fmt(spec: q.AlertSpec, value: str) -> str:
    if spec.unit == "percent":
        return f"{{{{ humanizePercentage {value} }}}}"
    return f"{{{{ humanize {value} }}}} ms"


def _fmt_threshold(spec: q.AlertSpec) -> str:
    return f"{spec.threshold:.4g}" + (" ms" if spec.unit == "ms" else "")


def threshold_rules(settings: Settings) -> list[dict[str, Any]]:
    a = settings.alerts
    panel_ids = sli_panel_ids(settings)
    rules = []
    for spec in q.alert_specs(settings):
        word = "above" if spec.op == "gt" else "below"
        limit = f"{spec.threshold:.0%}" if spec.unit == "percent" else _fmt_threshold(spec)
        where = f"{SLICE_LABELS}, {JUDGE_LABELS}" if spec.per_judge else SLICE_LABELS
        enough = (
            f"Each judge of a slice is its own instance (a change of judge is not a change "
            f"of quality), evaluated once its sample's effective size is at least "
            f"{a.min_judged_effective:g} in the window."
            if spec.per_judge
            else f"Only slices with at least {a.min_traces} traces in the window are evaluated."
        )
        annotations = {
            "summary": f"{spec.title} {_fmt(spec, '$values.B.Value')} on {where} ({word} {limit})",
            "description": f"{spec.title} of {where} over the last {a.window_minutes} "
            f"minutes is {_fmt(spec, '$values.B.Value')}, {word} the limit of {limit} "
            f"(alerts.{spec.setting}). {enough}",
            "__dashboardUid__": SLIS_UID,
            "__panelId__": str(panel_ids[spec.sli]),
        }
        rules.append(
            _rule(
                f"stream-eval-{spec.sli.replace('_', '-')}",
                f"stream-eval: {spec.title} {word} {limit}",
                _data(spec.sql, spec.window_s, spec.op, spec.threshold),
                f"{a.pending_minutes}m",
                {"severity": spec.severity, "sli": spec.sli},
                annotations,
            )
        )
    return rules


BURN_PENDING = {"grounding_burn_fast": "2m", "grounding_burn_slow": "15m"}


def _window(seconds: int) -> str:
    return f"{seconds // 3600}h" if seconds % 3600 == 0 else f"{seconds // 60}m"


def burn_rate_rules(settings: Settings) -> list[dict[str, Any]]:
    slo = settings.alerts.grounding_slo
    panel_ids = sli_panel_ids(settings)
    rules = []
    for spec in q.BURN_RATES:
        windows = f"{_window(spec.long_s)} and {_window(spec.short_s)}"
        annotations = {
            "summary": f"{spec.title}: grounding error budget of {SLICE_LABELS} burning "
            f"{{{{ humanize $values.B.Value }}}}x (both {windows} above {spec.threshold:g}x)",
            "description": f"Grounding SLO {slo:.2%} (error budget {1 - slo:.2%} of RAG "
            f"traces failing the grounding check) on {SLICE_LABELS}. The burn rate over both "
            f"the last "
            f"{windows} is at least {{{{ humanize $values.B.Value }}}}x, above "
            f"{spec.threshold:g}x: at that pace the budget of a 30-day window lasts "
            f"{30 / spec.threshold:.1f} days.",
            "__dashboardUid__": SLIS_UID,
            "__panelId__": str(panel_ids["grounding_rate"]),
        }
        rules.append(
            _rule(
                f"stream-eval-{spec.key.replace('_', '-')}",
                f"stream-eval: {spec.title} ({windows} > {spec.threshold:g}x)",
                _data(q.burn_rate_sql(spec, settings), spec.long_s, "gt", spec.threshold),
                BURN_PENDING[spec.key],
                {"severity": spec.severity, "sli": "grounding_burn_rate"},
                annotations,
            )
        )
    return rules


def loop_rules(settings: Settings) -> list[dict[str, Any]]:
    """The judge against people, and offline against online."""
    a = settings.alerts
    week = 7 * 86400
    panels = judge_panel_ids(settings)
    return [
        _rule(
            "stream-eval-judge-agreement",
            f"stream-eval: judge-human agreement below {a.judge_agreement_min:.0%}",
            _data(q.agreement_alert_sql(settings), week, "lt", a.judge_agreement_min),
            "0m",
            {"severity": "ticket", "sli": "judge_agreement"},
            {
                "summary": "Judge {{ $labels.judge_model }} on {{ $labels.rubric }} "
                "{{ $labels.rubric_version }} agrees with people on {{ humanizePercentage "
                f"$values.B.Value }}}} of labels (below {a.judge_agreement_min:.0%})",
                "description": "Over the last 7 days, with at least "
                f"{a.min_labels} labels (alerts.min_labels). A drifting judge moves every "
                "judge SLI: check `stream-eval review agreement` before reading them.",
                "__dashboardUid__": JUDGE_UID,
                "__panelId__": str(panels["agreement"]),
            },
        ),
        _rule(
            "stream-eval-judge-canary-drift",
            "stream-eval: the judge scores its canary set differently",
            _data(q.canary_alert_sql(), week, "gt", 0.5),
            "0m",
            {"severity": "ticket", "sli": "judge_canary"},
            {
                "summary": "Judge {{ $labels.judge_model }} on {{ $labels.rubric }}: its "
                "newest run of canary set {{ $labels.set_version }} moved one way beyond "
                "the run-to-run variation of the runs before (identical inputs)",
                "description": "A judge regression, not a product change: the provider "
                "may have updated the model under its pinned name. Read the judge SLIs "
                "with care until `stream-eval judge compare` against a replay says how far.",
                "__dashboardUid__": JUDGE_UID,
                "__panelId__": str(panels["canary"]),
            },
        ),
        _rule(
            "stream-eval-offline-online-divergence",
            f"stream-eval: offline and online disagree by more than {a.divergence_max:.0%}",
            _data(q.divergence_alert_sql(settings), 86400, "gt", a.divergence_max),
            f"{a.divergence_days * 24}h",  # the gap must persist this long
            {"severity": "ticket", "sli": "online_offline_divergence"},
            {
                "summary": "{{ $labels.metric }} on {{ $labels.route }}: offline and online "
                "failure rates differ by {{ humanizePercentage $values.B.Value }} and have "
                f"for {a.divergence_days} days (above {a.divergence_max:.0%})",
                "description": "The golden dataset no longer represents production for this "
                "check (or production drifted): promote recent failures, or look at the route.",
                "__dashboardUid__": JUDGE_UID,
                "__panelId__": str(panels["divergence"]),
            },
        ),
    ]


def rules_doc(settings: Settings) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": ORG_ID,
                "name": "stream-eval quality SLIs",
                "folder": FOLDER,
                "interval": "1m",
                "rules": threshold_rules(settings),
            },
            {
                "orgId": ORG_ID,
                "name": "stream-eval grounding SLO",
                "folder": FOLDER,
                "interval": "1m",
                "rules": burn_rate_rules(settings),
            },
            {
                "orgId": ORG_ID,
                "name": "stream-eval judge and offline",
                "folder": FOLDER,
                "interval": "5m",
                "rules": loop_rules(settings),
            },
        ],
    }


def contact_points_doc(settings: Settings) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "contactPoints": [
            {
                "orgId": ORG_ID,
                "name": CONTACT_POINT,
                "receivers": [
                    {
                        "uid": "stream-eval-oncall-email",
                        "type": "email",
                        "disableResolveMessage": False,
                        "settings": {
                            "addresses": settings.alerts.contact_email,
                            "singleEmail": True,
                            "subject": f'{{{{ template "{TEMPLATE_NAME}.subject" . }}}}',
                            "message": f'{{{{ template "{TEMPLATE_NAME}.message" . }}}}',
                        },
                    }
                ],
            }
        ],
    }


def policies_doc() -> dict[str, Any]:
    """Note: a provisioned policy tree replaces the organisation's whole tree."""
    return {
        "apiVersion": 1,
        "policies": [
            {
                "orgId": ORG_ID,
                "receiver": CONTACT_POINT,
                "group_by": ["alertname", "route", "prompt_version"],
                "group_wait": "30s",
                "group_interval": "5m",
                "repeat_interval": "4h",
                "routes": [
                    {
                        "receiver": CONTACT_POINT,
                        "object_matchers": [["severity", "=", "page"]],
                        "group_wait": "10s",
                        "group_interval": "1m",
                        "repeat_interval": "1h",
                    },
                    {
                        "receiver": CONTACT_POINT,
                        "object_matchers": [["severity", "=", "ticket"]],
                        "repeat_interval": "12h",
                    },
                ],
            }
        ],
    }


# Go text/template, as Grafana notification templates are. No "$" (see the module doc).
MESSAGE_TEMPLATE = """\
{{ define "NAME.subject" }}[{{ .Status | toUpper }}\
{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] {{ .CommonLabels.alertname }}\
{{ if .CommonLabels.route }} on {{ .CommonLabels.route }}{{ end }}\
{{ if .CommonLabels.prompt_version }} (prompt {{ .CommonLabels.prompt_version }}){{ end }}\
{{ end }}

{{ define "NAME.alert" }}- {{ .Annotations.summary }}
  slice: {{ .Labels.route }} / {{ .Labels.model_version }} / {{ .Labels.prompt_version }}
  sli: {{ .Labels.sli }}, severity: {{ .Labels.severity }}, since {{ .StartsAt }}
  {{ .Annotations.description }}
{{ if .PanelURL }}  panel: {{ .PanelURL }}
{{ else if .DashboardURL }}  dashboard: {{ .DashboardURL }}
{{ end }}{{ if .SilenceURL }}  silence: {{ .SilenceURL }}
{{ end }}{{ end }}

{{ define "NAME.message" }}\
{{ if gt (len .Alerts.Firing) 0 }}Firing:
{{ range .Alerts.Firing }}{{ template "NAME.alert" . }}{{ end }}{{ end }}\
{{ if gt (len .Alerts.Resolved) 0 }}Resolved:
{{ range .Alerts.Resolved }}{{ template "NAME.alert" . }}{{ end }}{{ end }}\
{{ end }}
""".replace("NAME", TEMPLATE_NAME)


def templates_doc() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "templates": [{"orgId": ORG_ID, "name": TEMPLATE_NAME, "template": MESSAGE_TEMPLATE}],
    }


def build_alerting(settings: Settings) -> dict[str, dict[str, Any]]:
    """``{file name: provisioning document}`` for grafana/provisioning/alerting/."""
    return {
        "contact-points.yaml": contact_points_doc(settings),
        "policies.yaml": policies_doc(),
        "rules.yaml": rules_doc(settings),
        "templates.yaml": templates_doc(),
    }
