"""A dashboard's frame and layout: rows of panels with stable ids (the alert rules link
to them), the route / model version / prompt variables, and the JSON the SDK encodes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dash_m

from stream_eval.grafana import queries as q
from stream_eval.grafana.panels import DATASOURCE, TAGS, Builder


@dataclass
class Layout:
    """Rows with their panels, ids given in order (stable, so alerts can link to panels)."""

    rows: list[tuple[str, list[tuple[str, Any]]]] = field(default_factory=list)

    def row(self, title: str) -> None:
        self.rows.append((title, []))

    def add(self, key: str, panel: Any) -> None:
        self.rows[-1][1].append((key, panel))

    def panel_ids(self) -> dict[str, int]:
        ids: dict[str, int] = {}
        n = 0
        for _, panels in self.rows:
            n += 1  # the row's own id
            for key, _ in panels:
                n += 1
                ids[key] = n
        return ids

    def apply(self, d: dash_b.Dashboard) -> dash_b.Dashboard:
        n = 0
        for title, panels in self.rows:
            n += 1
            d = d.with_row(dash_b.Row(title).id(n))
            for _, panel in panels:
                n += 1
                d = d.with_panel(cast(Builder, panel.id(n)))
        return d


def _variables() -> list[cogbuilder.Builder[dash_m.VariableModel]]:
    labels = {"route": "Route", "model_version": "Model version", "prompt_version": "Prompt"}
    out: list[cogbuilder.Builder[dash_m.VariableModel]] = []
    for name in q.VARIABLES:
        out.append(
            dash_b.QueryVariable(name)
            .label(labels[name])
            .datasource(DATASOURCE)
            .query(q.variable_query(name))
            .multi(True)
            .include_all(True)
            .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
            .current(dash_m.VariableOption(selected=True, text=["All"], value=["$__all"]))
        )
    return out


def dashboard_frame(title: str, uid: str, description: str) -> dash_b.Dashboard:
    annotations = (
        dash_b.AnnotationQuery()
        .name("Annotations & Alerts")
        .datasource(dash_m.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
        .type("dashboard")
        .built_in(1)
    )
    return (
        dash_b.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("utc")
        .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
        .annotation(annotations)
        .variables(_variables())
    )


def to_json(d: dash_b.Dashboard) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(d.build(), cls=JSONEncoder))
    return out
