"""``stream-eval review serve``: the review queue in the browser.

Server-rendered HTML (Starlette + Jinja2) with plain forms, no JavaScript: it works in
any browser and behind any proxy, and every action is one POST that redirects. Pages:

- ``/``: who you are, the queue by route and reason, "Review next";
- ``POST /next``: holds the next item for you and opens it;
- ``/item/{trace_id}/{span_id}``: the input with its system message, the retrieved
  context, the output, the checks and the judge's score and reason per rubric, and the
  label form (verdict, score on the rubric's scale, corrected answer, note). Other
  reviewers' labels are not shown: each label is given blind. A whole session (span
  ``session@<ms>``) shows its turns in order with what the closer found in each; an
  agent run (span ``run``) its task, tool calls with their results, final answer and
  run checks; both are labelled on their unit's rubrics (``rubrics.UNIT_RUBRICS``);
- ``POST /item/{trace_id}/{span_id}``: records the label (labels topic, then
  ClickHouse) and releases the item.

The reviewer is the ``review.user_header`` request header when an auth proxy sets one,
else the name given on the sign-in form (a cookie: identification, not authentication).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from stream_eval.config import Settings
from stream_eval.review.labels import InvalidLabel, Label, Publish, record
from stream_eval.review.queue import next_item, queue_counts, release, reserve
from stream_eval.review.units import judged, load_run, load_session
from stream_eval.rubrics import rubrics_of
from stream_eval.sink.literals import sql_str
from stream_eval.sink.store import Store
from stream_eval.unit_ids import unit_of

COOKIE = "stream_eval_reviewer"
_ENV = Environment(loader=PackageLoader("stream_eval.review"), autoescape=select_autoescape())


def _page(name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    return HTMLResponse(_ENV.get_template(name).render(**ctx), status_code=status)


def _item_url(trace_id: str, span_id: str) -> str:
    return f"/item/{quote(trace_id, safe='')}/{quote(span_id or '-', safe='')}"


def _load(store: Store, trace_id: str, span_id: str) -> dict[str, Any] | None:
    db, t, s = store.database, sql_str(trace_id), sql_str(span_id)
    rows = store.query(
        f"SELECT trace_id, span_id, route, model_version, prompt_version, toString(ts) AS ts, "
        f"input_text, system_text, output_text, documents_json, failed_checks "
        f"FROM {db}.traces FINAL WHERE trace_id = {t} AND span_id = {s} LIMIT 1"
    )
    if not rows:
        return None
    trace = rows[0]
    docs = orjson.loads(trace["documents_json"]) if trace["documents_json"] else []
    checks = store.query(
        f"SELECT check_name, passed, score, reason FROM {db}.check_results "
        f"WHERE trace_id = {t} AND span_id = {s} ORDER BY check_name"
    )
    queued = store.query(
        f"SELECT reason, detail, rubric FROM {db}.review_queue FINAL "
        f"WHERE trace_id = {t} AND span_id = {s}"
    )
    return {"trace": trace, "documents": docs, "checks": checks,
            "judged": judged(store, trace_id, span_id),
            "queued": queued[0] if queued else None}  # fmt: skip


def create_app(settings: Settings, store: Store, publish: Publish | None = None) -> Starlette:
    cfg = settings.review
    hold_s = cfg.reserve_minutes * 60

    def reviewer(request: Request) -> str:
        if cfg.user_header:
            return request.headers.get(cfg.user_header, "").strip()
        return request.cookies.get(COOKIE, "").strip()

    async def index(request: Request) -> Response:
        who = reviewer(request)
        if not who:
            return _page("signin.html", header=cfg.user_header)
        counts = await run_in_threadpool(queue_counts, store)
        done = request.query_params.get("done", "")
        return _page("index.html", reviewer=who, counts=counts, done=done)

    async def signin(request: Request) -> Response:
        form = await request.form()
        name = str(form.get("reviewer", "")).strip()[:256]
        resp = RedirectResponse("/", status_code=303)
        if name:
            resp.set_cookie(COOKIE, name, httponly=True, samesite="strict")
        return resp

    async def take_next(request: Request) -> Response:
        who = reviewer(request)
        if not who:
            return RedirectResponse("/", status_code=303)
        item = await run_in_threadpool(next_item, store, who, cfg.reserve_minutes)
        if item is None:
            return RedirectResponse("/?done=empty", status_code=303)
        return RedirectResponse(_item_url(item.trace_id, item.span_id), status_code=303)

    async def item(request: Request) -> Response:
        who = reviewer(request)
        if not who:
            return RedirectResponse("/", status_code=303)
        trace_id = request.path_params["trace_id"]
        span_id = "" if request.path_params["span_id"] == "-" else request.path_params["span_id"]
        if request.method == "POST":
            return await _submit(request, who, trace_id, span_id)
        shown = await _shown(trace_id, span_id, who, "", {})
        if shown.status_code == 200:
            await run_in_threadpool(reserve, store, trace_id, span_id, who, hold_s)
        return shown

    async def _shown(
        trace_id: str, span_id: str, who: str, error: str, form: dict[str, str]
    ) -> Response:
        """The item's page: a call, or a whole session or agent run, with the form."""
        unit = unit_of(span_id)
        load = {"call": _load, "session": load_session, "run": load_run}[unit]
        data = await run_in_threadpool(load, store, trace_id, span_id)
        if data is None:
            return _page("error.html", 404, message=f"No such {unit} in the store.")
        page = "item.html" if unit == "call" else "unit.html"
        return _page(
            page, 422 if error else 200, reviewer=who, rubrics=rubrics_of(unit), error=error,
            form=form, **data,
        )  # fmt: skip

    async def _submit(request: Request, who: str, trace_id: str, span_id: str) -> Response:
        form = await request.form()
        values = {k: str(v) for k, v in form.items()}
        try:
            score = values.get("score", "").strip()
            label = Label(
                trace_id=trace_id, span_id=span_id, reviewer=who,
                rubric=values.get("rubric", ""), verdict=values.get("verdict", ""),
                score=float(score) if score else None,
                corrected_answer=values.get("corrected_answer", "").strip(),
                note=values.get("note", "").strip(),
            )  # fmt: skip
        except (InvalidLabel, ValueError) as exc:
            return await _shown(trace_id, span_id, who, str(exc), values)
        if label.rubric not in rubrics_of(unit_of(span_id)):
            return await _shown(trace_id, span_id, who, f"{label.rubric} is not a rubric of "
                                f"this {unit_of(span_id)}", values)  # fmt: skip
        await run_in_threadpool(record, store, [label], publish)
        await run_in_threadpool(release, store, trace_id, span_id, who)
        return RedirectResponse("/?done=saved", status_code=303)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/signin", signin, methods=["POST"]),
            Route("/next", take_next, methods=["POST"]),
            Route("/item/{trace_id}/{span_id}", item, methods=["GET", "POST"]),
        ]
    )
