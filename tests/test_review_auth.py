"""The review app authenticates and authorises, in a real browser (Debian's Chromium through
Playwright) and from outside it: an unauthenticated request is refused, a forged form post
is refused (without the session's CSRF token, or from another site), a reviewer cannot
reach an admin action, the session cookie is HttpOnly, Secure and SameSite=Strict, an
admin erases through the app, and who opened, labelled, erased or was refused is in the
audit log. The proxy mode believes its header only with proof."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import csrf_of, serve, sign_in, sign_in_browser, with_reviewers
from starlette.testclient import TestClient

from stream_eval.config import ClickHouseSettings, ReviewSettings, Settings
from stream_eval.review.auth import hash_password, verify_password
from stream_eval.review.web import COOKIE, create_app
from stream_eval.sink.base import Store
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import open_store

NOW = 1_790_000_000.0


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(ClickHouseSettings(path=str(tmp_path / "chdb")))
    trace = {"trace_id": "t1", "span_id": "s", "route": "support", "ts": NOW,
             "input_text": "hi", "output_text": "hello", "ingested_at": NOW}  # fmt: skip
    s.insert("traces", ndjson([trace, {**trace, "trace_id": "t2"}]))
    s.insert("review_queue", ndjson([{"trace_id": "t1", "span_id": "s", "route": "support",
                                      "reason": "judge_fail", "rubric": "helpfulness",
                                      "reviewers_required": 1, "ts": NOW,
                                      "enqueued_at": NOW}]))  # fmt: skip
    yield s
    s.close()


def _post(url: str, data: dict[str, str], cookie: str = "") -> int:
    req = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode(), method="POST")
    if cookie:
        req.add_header("Cookie", cookie)
    try:
        with urllib.request.urlopen(req) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _audit(store: Store) -> list[tuple[str, str, str]]:
    rows = store.query("SELECT user, action, trace_id FROM stream_eval.review_audit ORDER BY at")
    return [(r["user"], r["action"], r["trace_id"]) for r in rows]


def test_in_the_browser_only_who_signed_in_may_and_only_admins_erase(
    store: Store, request: pytest.FixtureRequest
) -> None:
    browser: Any = request.getfixturevalue("browser")
    settings = with_reviewers(Settings(), ana="reviewer", olga="admin")
    base, server = serve(create_app(settings, store))
    try:
        # Unauthenticated: the item page and every action are refused.
        page = browser.new_page()
        assert page.goto(f"{base}/item/t1/s").status == 401
        assert _post(f"{base}/next", {}) == 401
        assert _post(f"{base}/admin/erase", {"kind": "trace_id", "value": "t1"}) == 401
        # A wrong password is refused (and recorded).
        sign_in_browser(page, base, "ana", password="guess")
        assert "wrong password" in page.inner_text("#signin-error")

        sign_in_browser(page, base, "ana")
        assert page.inner_text("#reviewer") == "ana"
        (cookie,) = [c for c in page.context.cookies() if c["name"] == COOKIE]
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
        assert page.locator("#admin").count() == 0  # no admin link for a reviewer
        # A reviewer cannot reach an admin action, with or without the token.
        assert page.goto(f"{base}/admin").status == 403
        session = f"{COOKIE}={cookie['value']}"
        assert _post(f"{base}/admin/erase", {"kind": "trace_id", "value": "t1"}, session) == 403
        # A forged post: the session's cookie without its token, or a form on another site.
        assert _post(f"{base}/next", {"csrf": "forged"}, session) == 403
        evil = browser.new_page()
        evil.set_content(
            f'<form id="f" method="post" action="{base}/next"><button>go</button></form>'
        )
        with evil.expect_navigation():
            evil.click("button")
        assert "Sign in first" in evil.content()  # SameSite=Strict: sent without the cookie
        # Her own form works: the item opens and is labelled.
        page.goto(f"{base}/")
        page.click("#next")
        page.wait_for_selector("#label-form")
        page.check('#label-form fieldset:first-of-type input[value="pass"]')
        page.fill('#label-form fieldset:first-of-type input[type="number"]', "8")
        page.click("#submit")
        assert page.inner_text("#flash") == "Label saved."

        admin = browser.new_context().new_page()
        sign_in_browser(admin, base, "olga")
        admin.click("#admin")
        admin.select_option("#kind", "trace_id")
        admin.fill("#value", "t2")
        admin.click("#erase")
        assert "Erased trace_id" in admin.inner_text("#erased")
        assert "denied" in admin.inner_text("#audit")
    finally:
        server.should_exit = True
    assert (
        store.query("SELECT count() AS n FROM stream_eval.traces WHERE trace_id = 't2'")[0]["n"]
        == 0
    )
    audit = _audit(store)
    assert ("ana", "signin_failed", "") in audit and ("ana", "signin", "") in audit
    assert ("ana", "open", "t1") in audit and ("ana", "label", "t1") in audit
    assert ("olga", "erase", "") in audit
    denied = [a for a in audit if a[1] == "denied"]
    assert len(denied) == 7  # 3 unauthenticated, 2 admin-only, 1 forged, 1 cross-site
    assert sum(1 for a in denied if a[0] == "ana") == 3


def test_the_proxy_header_is_believed_only_with_proof(store: Store) -> None:
    cfg = ReviewSettings(
        auth="proxy", user_header="X-Forwarded-User", proxy_secret="s3cret",  # type: ignore[arg-type]
        admins=["olga"],
    )  # fmt: skip
    client = TestClient(create_app(Settings(review=cfg), store), base_url="https://testserver")
    assert client.get("/item/t1/s", headers={"X-Forwarded-User": "mallory"}).status_code == 401
    page = client.get("/", headers={"X-Forwarded-User": "mallory"})
    assert "did not come through it" in page.text
    wrong = {"X-Forwarded-User": "olga", "X-Stream-Eval-Proxy-Secret": "guess"}
    assert client.get("/admin", headers=wrong).status_code == 401
    proof = {"X-Stream-Eval-Proxy-Secret": "s3cret"}
    assert client.get("/", headers={**proof, "X-Forwarded-User": "ana"}).status_code == 200
    assert client.get("/admin", headers={**proof, "X-Forwarded-User": "ana"}).status_code == 403
    assert client.get("/admin", headers={**proof, "X-Forwarded-User": "olga"}).status_code == 200
    # by address: the test client's peer is "testclient", no address: not trusted
    by_addr = ReviewSettings(auth="proxy", user_header="X-U", trusted_proxies=["127.0.0.1/32"])
    other = TestClient(create_app(Settings(review=by_addr), store), base_url="https://testserver")
    assert other.get("/item/t1/s", headers={"X-U": "ana"}).status_code == 401
    with pytest.raises(ValueError, match="proof"):
        ReviewSettings(auth="proxy", user_header="X-U")


def test_passwords_are_kept_as_salted_scrypt_hashes_only() -> None:
    a, b = hash_password("pw"), hash_password("pw")
    assert a != b and a.startswith("scrypt$") and "pw" not in a.split("$")[-1]
    assert verify_password("pw", a) and not verify_password("pw2", a)
    assert not verify_password("pw", "plain:pw")
    with pytest.raises(ValueError):
        ReviewSettings(users={"x": {"password_hash": "pw"}})  # type: ignore[dict-item]


def test_a_stale_or_missing_token_never_signs_in(store: Store) -> None:
    settings = with_reviewers(Settings(), ana="reviewer")
    client = TestClient(create_app(settings, store), base_url="https://testserver")
    from helpers import REVIEW_PASSWORD

    r = client.post("/signin", data={"reviewer": "ana", "password": REVIEW_PASSWORD})
    assert r.status_code == 403  # no token: a login form posted from elsewhere
    assert sign_in(client, "ana").status_code == 303
    token = csrf_of(client.get("/").text)
    out = client.post("/signout", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303 and client.get("/item/t1/s").status_code == 401
    assert orjson.loads(orjson.dumps(_audit(store)))[-1][1] == "denied"


def test_the_cli_hashes_a_password_and_will_not_serve_an_app_nobody_can_enter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from stream_eval.cli import cli

    monkeypatch.setenv("STREAM_EVAL_CLICKHOUSE__PATH", str(tmp_path / "chdb"))
    out = CliRunner().invoke(cli, ["review", "hash-password", "--password", "pw"], obj={})
    assert out.exit_code == 0 and verify_password("pw", out.output.strip())
    out = CliRunner().invoke(cli, ["review", "serve", "--no-kafka"], obj={})
    assert out.exit_code != 0 and "no one can sign in" in out.output


def test_only_admins_see_what_the_policy_keeps_and_labels_are_masked_as_traces_are(
    store: Store,
) -> None:
    mail = "jane.roe@mailbox.org"
    store.insert("traces", ndjson([{"trace_id": "kept", "span_id": "s", "route": "internal",
                                    "ts": NOW, "input_text": f"I am {mail}",
                                    "output_text": f"Hi {mail}", "ingested_at": NOW}]))  # fmt: skip
    kept = {"input": "keep", "output": "keep", "tools": "keep"}
    settings = with_reviewers(
        Settings(routes={"internal": {"privacy": kept}}), ana="reviewer", olga="admin"
    )
    app = create_app(settings, store)
    ana = TestClient(app, base_url="https://testserver")
    olga = TestClient(app, base_url="https://testserver")
    assert sign_in(ana, "ana").status_code == 303 and sign_in(olga, "olga").status_code == 303
    seen = ana.get("/item/kept/s").text
    marked = re.sub(r"<mark[^>]*>|</mark>", "", seen)  # the placeholders are marked as PII
    assert mail not in seen and "I am &lt;EMAIL_1&gt;" in marked and "Hi &lt;EMAIL_1&gt;" in marked
    assert mail in olga.get("/item/kept/s").text  # as stored
    # A whole agent run likewise: its task, tool arguments and result, and answer.
    store.insert("agent_runs", ndjson([{
        "trace_id": "run1", "route": "internal", "ts": NOW, "steps": 2, "tool_names": ["crm"],
        "tool_arguments": [f'{{"who": "{mail}"}}'], "tool_errors": [""],
        "tool_results": [f"found {mail}"], "final_answer": f"Mail {mail}", "ingested_at": NOW,
    }]))  # fmt: skip
    store.insert("traces", ndjson([{"trace_id": "run1", "span_id": "c1", "route": "internal",
                                    "ts": NOW, "input_text": f"task of {mail}",
                                    "output_text": "", "ingested_at": NOW}]))  # fmt: skip
    run_page = ana.get("/item/run1/run")
    assert run_page.status_code == 200 and mail not in run_page.text
    assert "found &lt;EMAIL_1&gt;" in run_page.text
    assert run_page.text.count(mail) == 0 and mail in olga.get("/item/run1/run").text
    # What a reviewer writes is masked as the trace's own output would be.
    token = csrf_of(ana.get("/item/t1/s").text)
    note = f"call {mail} back"
    saved = ana.post(
        "/item/t1/s",
        data={"rubric": "helpfulness", "verdict": "fail", "corrected_answer": f"Write {mail}",
              "note": note, "csrf": token},
        follow_redirects=False,
    )  # fmt: skip
    assert saved.status_code == 303
    token = csrf_of(olga.get("/item/kept/s").text)
    label = {"rubric": "helpfulness", "verdict": "pass", "corrected_answer": f"Write {mail}"}
    olga.post("/item/kept/s", data={**label, "csrf": token})
    labels = {
        r["trace_id"]: (r["corrected_answer"], r["note"])
        for r in store.query(
            "SELECT trace_id, corrected_answer, note FROM stream_eval.review_labels"
        )
    }
    assert labels == {
        "t1": ("Write <EMAIL_1>", "call <EMAIL_1> back"),
        "kept": (f"Write {mail}", ""),
    }
