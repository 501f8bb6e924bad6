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

- ``/admin`` (admins only): erasure by user, session or trace id, and the audit log.

Who may do what is ``review.auth`` (``review/auth.py``): the built-in sign-in of
``review.users`` or an authenticating proxy's header with proof it came through the
proxy; an unauthenticated request gets the sign-in page or 401, a reviewer asking for an
admin action 403, a POST without the session's CSRF token 403. Who opened, labelled or
erased what, and every refusal, is a row of ``review_audit``.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from stream_eval.config import Settings
from stream_eval.privacy.erase import KINDS, erase
from stream_eval.privacy.redact import Redactor
from stream_eval.review.auth import (
    User,
    csrf_ok,
    csrf_token,
    proxy_user,
    session_user,
    verify_password,
)
from stream_eval.review.evidence import output_evidence, pii_parts
from stream_eval.review.form import filled, form_rubrics, labels_of
from stream_eval.review.labels import InvalidLabel, Publish, record
from stream_eval.review.queue import (
    FILTERS,
    filter_of,
    matches,
    my_labels,
    next_item,
    queue_counts,
    release,
    reserve,
)
from stream_eval.review.units import judged, load_run, load_session
from stream_eval.rubrics import rubrics_of
from stream_eval.sink.literals import sql_str
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import Store
from stream_eval.unit_ids import unit_of

COOKIE = "stream_eval_review"  # the signed session
_ENV = Environment(loader=PackageLoader("stream_eval.review"), autoescape=select_autoescape())


def _page(name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    return HTMLResponse(_ENV.get_template(name).render(**ctx), status_code=status)


def _item_url(trace_id: str, span_id: str) -> str:
    return f"/item/{quote(trace_id, safe='')}/{quote(span_id or '-', safe='')}"


def _item_key(request: Request) -> tuple[str, str]:
    """The (trace id, span id) an item URL names (``_item_url``'s inverse)."""
    span_id = request.path_params["span_id"]
    return request.path_params["trace_id"], "" if span_id == "-" else span_id


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


MAX_SKIPPED = 30  # items a session remembers it skipped (its cookie stays under 4 KB)


def _progress(counts: list[dict[str, Any]]) -> dict[str, int]:
    """Items still wanting labels, of all the items, in the rows of ``queue_counts`` shown."""
    return {"open": sum(int(c["open"]) for c in counts),
            "items": sum(int(c["items"]) for c in counts)}  # fmt: skip


def create_app(settings: Settings, store: Store, publish: Publish | None = None) -> Starlette:
    cfg = settings.review
    hold_s = cfg.reserve_minutes * 60
    proxy_secret = cfg.proxy_secret.get_secret_value() if cfg.proxy_secret else ""
    key = cfg.session_key.get_secret_value() if cfg.session_key else secrets.token_urlsafe(32)
    trusted = [ipaddress.ip_network(net, strict=False) for net in cfg.trusted_proxies]

    def current(request: Request) -> User | None:
        if cfg.auth == "proxy":
            return proxy_user(
                request, cfg.user_header, cfg.proxy_secret_header, proxy_secret,
                trusted, cfg.admins,
            )  # fmt: skip
        return session_user(request)

    async def audit(
        request: Request, who: str, action: str, trace_id: str = "", span_id: str = "",
        detail: str = "",
    ) -> None:  # fmt: skip
        row = {
            "at": round(time.time(), 3), "user": who[:256], "action": action,
            "trace_id": trace_id, "span_id": span_id, "detail": detail[:1000],
            "addr": request.client.host if request.client else "",
        }  # fmt: skip
        await run_in_threadpool(store.insert, "review_audit", ndjson([row]))

    def page(
        request: Request, name: str, who: User | None, status: int = 200, **ctx: Any
    ) -> Response:
        return _page(
            name, status, reviewer=who.name if who else "", admin=bool(who and who.is_admin),
            signout=cfg.auth == "password" and who is not None, csrf=csrf_token(request),
            **ctx,
        )  # fmt: skip

    async def refused(request: Request, status: int, why: str, who: User | None = None) -> Response:
        await audit(
            request, who.name if who else "", "denied", detail=f"{status} {request.url.path}: {why}"
        )
        return page(request, "error.html", who, status, message=why)

    async def guarded(request: Request, admin: bool = False) -> User | Response:
        """The signed-in user, or the refusal: 401 without one, 403 for a reviewer asking for
        an admin action or for a POST without the session's CSRF token."""
        who = current(request)
        if who is None:
            return await refused(request, 401, "Sign in first.")
        if admin and not who.is_admin:
            return await refused(request, 403, "Only an admin may do that.", who)
        if request.method == "POST":
            form = await request.form()
            if not csrf_ok(request, str(form.get("csrf", ""))):
                return await refused(
                    request, 403, "This form is stale or was not ours: reload the page.", who
                )
        return who

    async def index(request: Request) -> Response:
        who = current(request)
        if who is None:
            return page(request, "signin.html", None, proxy=cfg.auth == "proxy")
        counts = await run_in_threadpool(queue_counts, store)
        done = request.query_params.get("done", "")
        only = filter_of(request.query_params)
        options = {k: sorted({str(c[k]) for c in counts}) for k in FILTERS}
        shown = [c for c in counts if matches(c, only)]
        return page(
            request, "index.html", who, counts=shown, done=done, only=only, options=options,
            progress=_progress(shown),
        )  # fmt: skip

    async def signin(request: Request) -> Response:
        form = await request.form()
        if cfg.auth != "password":
            return await refused(request, 404, "Sign in through your proxy.")
        if not csrf_ok(request, str(form.get("csrf", ""))):
            return await refused(
                request, 403, "This form is stale or was not ours: reload the page."
            )
        name = str(form.get("reviewer", "")).strip()[:256]
        user = cfg.users.get(name)
        if user is None or not verify_password(str(form.get("password", "")), user.password_hash):
            await audit(request, name, "signin_failed")
            return page(request, "signin.html", None, 401, error="Unknown name or wrong password.")
        request.session.clear()
        request.session.update({"user": name, "role": user.role})
        csrf_token(request)  # a new token for the new session
        await audit(request, name, "signin")
        return RedirectResponse("/", status_code=303)

    async def signout(request: Request) -> Response:
        who = await guarded(request)
        if isinstance(who, Response):
            return who
        request.session.clear()
        await audit(request, who.name, "signout")
        return RedirectResponse("/", status_code=303)

    async def take_next(request: Request) -> Response:
        who = await guarded(request)
        if isinstance(who, Response):
            return who
        # the queue's filter, kept for the session: save-and-next and skip stay within it
        request.session["filter"] = filter_of(await request.form())
        return await _go_next(request, who, "empty")

    async def _go_next(request: Request, who: User, none_left: str) -> Response:
        """The reviewer's next item (not one they skipped this session, within the session's
        filter), or the queue."""
        skipped = [tuple(k) for k in request.session.get("skipped", [])]
        only = filter_of(request.session.get("filter", {}))
        item = await run_in_threadpool(
            next_item, store, who.name, cfg.reserve_minutes, skipped, only
        )
        if item is None:
            return RedirectResponse(f"/?{urlencode({'done': none_left, **only})}", 303)
        return RedirectResponse(_item_url(item.trace_id, item.span_id), status_code=303)

    async def skip(request: Request) -> Response:
        """Leave an item for someone else: released, and not offered again this session."""
        who = await guarded(request)
        if isinstance(who, Response):
            return who
        trace_id, span_id = _item_key(request)
        kept = [k for k in request.session.get("skipped", []) if k != [trace_id, span_id]]
        request.session["skipped"] = [*kept, [trace_id, span_id]][-MAX_SKIPPED:]
        await run_in_threadpool(release, store, trace_id, span_id, who.name)
        await audit(request, who.name, "skip", trace_id, span_id)
        return await _go_next(request, who, "empty")

    async def item(request: Request) -> Response:
        who = await guarded(request)
        if isinstance(who, Response):
            return who
        trace_id, span_id = _item_key(request)
        if request.method == "POST":
            return await _submit(request, who, trace_id, span_id)
        mine = await run_in_threadpool(my_labels, store, trace_id, span_id, who.name)
        shown = await _shown(request, trace_id, span_id, who, "", filled(mine), mine)
        if shown.status_code == 200:
            await run_in_threadpool(reserve, store, trace_id, span_id, who.name, hold_s)
            await audit(request, who.name, "open", trace_id, span_id)
        return shown

    async def _shown(
        request: Request, trace_id: str, span_id: str, who: User, error: str,
        form: dict[str, str], mine: list[dict[str, Any]] | None = None,
    ) -> Response:  # fmt: skip
        """The item's page: a call, or a whole session or agent run, with the form (filled
        with the reviewer's newest label on it, if any: saving again replaces it)."""
        unit = unit_of(span_id)
        load = {"call": _load, "session": load_session, "run": load_run}[unit]
        data = await run_in_threadpool(load, store, trace_id, span_id)
        if data is None:
            return page(request, "error.html", who, 404, message=f"No such {unit} in the store.")
        if not who.is_admin:
            data = _masked_for_reviewers(data)
        name = "item.html" if unit == "call" else "unit.html"
        only = filter_of(request.session.get("filter", {}))
        counts = await run_in_threadpool(queue_counts, store)
        progress = _progress([c for c in counts if matches(c, only)])
        if unit == "call":  # the evidence, in the text as it is shown
            t = data["trace"]
            checks = settings.checks_for(str(t["route"]))
            data["evidence"] = output_evidence(str(t["output_text"]), data["documents"], checks)
            data["input_parts"] = pii_parts(str(t["input_text"]))
            data["system_parts"] = pii_parts(str(t["system_text"] or ""))
        judged_by = {str(j["rubric"]): j for j in data["judged"]}
        queued = str((data.get("queued") or {}).get("rubric") or "")
        in_form = form_rubrics(span_id, data.get("documents", []), data["judged"], queued, form)
        return page(
            request, name, who, 422 if error else 200, rubrics=rubrics_of(unit), error=error,
            form=form, mine=mine or [], progress=progress, item_url=_item_url(trace_id, span_id),
            only=only, form_rubrics=in_form, judged_by=judged_by, **data,
        )  # fmt: skip

    def _masked_for_reviewers(data: dict[str, Any]) -> dict[str, Any]:
        """An item as a reviewer sees it: the fields its route's policy keeps unmasked in the
        store (``keep``) masked on the page; only admins see them as stored."""

        def masker(route: str) -> Callable[[str, str], str]:
            policy = settings.privacy_for(route)
            r = Redactor(policy)

            def mask(text: str, field: str) -> str:
                kept = getattr(policy.modes, field) == "keep"
                return r.text(text, "mask") if kept and text else text

            return mask

        unit = data.get("unit", "call")
        if unit == "session":
            for turn in data["turns"]:
                mask = masker(turn["route"])
                turn["user"], turn["answer"] = (
                    mask(turn["user"], "input"),
                    mask(turn["answer"], "output"),
                )
            return data
        if unit == "run":
            run, mask = data["run"], masker(data["run"]["route"])
            data["task"] = mask(data["task"], "input")
            run["final_answer"], run["error"] = (
                mask(run["final_answer"], "output"),
                mask(run["error"], "tools"),
            )
            for call in data["calls"]:
                call["input_text"] = mask(call["input_text"], "input")
                call["output_text"] = mask(call["output_text"], "output")
            for tool in data["tools"]:
                for key in ("arguments", "error", "result"):
                    tool[key] = mask(tool[key], "tools")
            return data
        trace, mask = data["trace"], masker(data["trace"]["route"])
        for column, name in (("input_text", "input"), ("system_text", "system"),
                             ("output_text", "output")):  # fmt: skip
            trace[column] = mask(trace[column], name)
        data["documents"] = [
            {**d, "content": mask(str(d.get("content", "")), "documents")}
            for d in data["documents"]
        ]
        return data

    async def _submit(request: Request, who: User, trace_id: str, span_id: str) -> Response:
        form = await request.form()
        values = {k: str(v) for k, v in form.items() if k != "csrf"}
        try:
            labels = labels_of(values, trace_id, span_id, who.name)
        except InvalidLabel as exc:
            return await _shown(request, trace_id, span_id, who, str(exc), values)
        await run_in_threadpool(record, store, labels, publish, settings.privacy_for)
        await run_in_threadpool(release, store, trace_id, span_id, who.name)
        said = ", ".join(f"{x.rubric}: {x.verdict}" for x in labels)
        await audit(request, who.name, "label", trace_id, span_id, said)
        if values.get("then") == "next":  # saved, and straight on to the next item
            return await _go_next(request, who, "saved-empty")
        return RedirectResponse("/?done=saved", status_code=303)

    async def admin(request: Request) -> Response:
        who = await guarded(request, admin=True)
        if isinstance(who, Response):
            return who
        result = ""
        if request.method == "POST":
            form = await request.form()
            kind, value = str(form.get("kind", "")), str(form.get("value", "")).strip()
            if kind not in KINDS or not value:
                return page(request, "admin.html", who, 422, result="Choose a kind and an id.",
                            audit=await _audit_rows())  # fmt: skip
            erased = await run_in_threadpool(erase, store, kind, value, who.name)
            await audit(request, who.name, "erase", detail=f"{kind}: {erased.total} rows")
            result = f"Erased {kind}: {erased.total} rows from {len(erased.removed)} tables."
        return page(request, "admin.html", who, result=result, audit=await _audit_rows())

    async def _audit_rows() -> list[dict[str, Any]]:
        return await run_in_threadpool(
            store.query,
            f"SELECT toString(at) AS at, user, action, trace_id, span_id, detail "
            f"FROM {store.database}.review_audit ORDER BY at DESC LIMIT 100",
        )

    return Starlette(
        routes=[
            Route("/", index),
            Route("/signin", signin, methods=["POST"]),
            Route("/signout", signout, methods=["POST"]),
            Route("/next", take_next, methods=["POST"]),
            Route("/item/{trace_id}/{span_id}", item, methods=["GET", "POST"]),
            Route("/item/{trace_id}/{span_id}/skip", skip, methods=["POST"]),
            Route("/admin", admin),
            Route("/admin/erase", admin, methods=["POST"]),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=key,
                session_cookie=COOKIE,
                max_age=round(cfg.session_hours * 3600),
                same_site="strict",
                https_only=cfg.cookie_secure,
            )
        ],
    )
