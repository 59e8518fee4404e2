"""The dashboard on a real uvicorn socket: the page for everyone, the actions only for a signed-in
person with the form's CSRF token, each done by the same `Project` method as the CLI and
recorded with who and why; a refusal is a 4xx that changed nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from modelloop.examples.server import BackgroundServer
from modelloop.project import Project
from modelloop.serving import create_app
from modelloop.serving.sessions import COOKIE, Sessions
from tests.conftest import AS_OF, RAW_CONFIG, build_flights, build_project, serve_rows

TOKEN = "s3cret-dashboard"


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project with a champion (v1, approved), a version waiting for approval (v2), two
    monitoring windows and an open alert."""
    import copy

    from modelloop.config import parse_config

    raw = copy.deepcopy(RAW_CONFIG)
    # A tolerance, so that a second model on the same stationary data waits rather than loses.
    raw["gate"] = {**raw["gate"], "approval": "manual", "tolerance": 0.1}
    raw["monitoring"] = {**raw["monitoring"], "window": "7d", "performance_floor": 0.6}
    raw["ui"] = {"mlflow_url": "http://mlflow.example:5000/"}
    flights = build_flights()
    project = build_project(tmp_path_factory.mktemp("ui"), flights, parse_config(raw))
    project.train(as_of=AS_OF - timedelta(days=20))
    project.approve(1, by="setup", reason="first model")
    recent = flights[flights["sched_dep"] > AS_OF - timedelta(days=20)]
    serve_rows(project, recent.drop(columns=["delayed"]), "ui-rows")
    project.ingest_labels(recent[["flight_id", "delayed"]])
    for days in (7, 0):
        project.monitor(as_of=AS_OF - timedelta(days=days), retrain=False)
    project.db.record_alert("drift", as_of=AS_OF, subject="temp",
                            detail={"message": "temp drifted: PSI 0.31 > 0.2"})
    _, decision = project.train(as_of=AS_OF)
    assert decision is not None and decision.outcome == "pending_approval", decision
    return project


@pytest.fixture(scope="module")
def server(loop: Project) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(loop, token=TOKEN)) as running:
        yield running


def client(server: BackgroundServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60, follow_redirects=False)


def sign_in(http: httpx.Client, who: str = "ana") -> str:
    """Signs in; returns the CSRF token the page's forms carry."""
    answer = http.post("/ui/signin", data={"who": who, "token": TOKEN})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui?done=signed_in"
    cookie = answer.headers["set-cookie"]
    for part in ("HttpOnly", "SameSite=Strict", "Path=/ui"):
        assert part in cookie
    assert "Secure" not in cookie  # plain http on loopback: a Secure cookie would never return
    page = http.get("/ui")
    assert f"signed in as <strong class=\"who\">{who}</strong>" in page.text
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def champion(project: Project) -> int | None:
    found = project.champion()
    return found.version if found else None


def status_of(project: Project, version: int) -> str | None:
    return project.registry.get_version(project.name, version).status


def test_the_page_shows_the_loop_to_anyone_and_offers_no_action(
    server: BackgroundServer, loop: Project
) -> None:
    with client(server) as http:
        page = http.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    html = page.text
    assert "<h1>flights</h1>" in html
    assert re.search(r'class="role-champion"><td>champion</td>\s*<td class="version"><a href="'
                     r'http://mlflow.example:5000/#/models/flights/versions/1"', html)
    assert "pending_approval" in html and "Waiting for approval: v2" in html
    # Charts: performance with its floor, label coverage, the drift heat map with a cell per
    # feature and window, each window linked to its report.
    assert html.count('<svg class="chart line"') == 2
    assert 'class="floor"' in html
    assert html.count('<rect class="cell') == 4 * 2
    assert html.count('<a href="/ui/reports/') == 4 * 2 + 2
    # The timeline with the approval's who and why; the alert; the ledger's runs.
    assert '<span class="by">setup</span>' in html and "first model" in html
    assert "temp drifted: PSI 0.31 &gt; 0.2" in html
    assert html.count('<tr><td class="num">') >= 4  # train, monitor, monitor, train
    assert "<script" not in html
    # Read-only: no form acts without a session.
    assert "/ui/actions/" not in html and "Sign in to act" in html


def test_a_window_report_is_served_and_nothing_else_is(server: BackgroundServer, loop: Project) -> None:
    [first, *_] = loop.monitoring_history()
    with client(server) as http:
        found = http.get(f"/ui/reports/{first['id']}")
        missing = http.get("/ui/reports/999999")
        bad = http.get("/ui/reports/..%2F..%2Fetc%2Fpasswd")
    assert found.status_code == 200 and "Monitoring report: flights" in found.text
    assert missing.status_code == 404
    assert bad.status_code in (400, 404, 422)


def test_actions_without_a_session_are_refused_and_change_nothing(
    server: BackgroundServer, loop: Project
) -> None:
    with client(server) as http:
        refused = http.post("/ui/actions/approve", data={"version": "2", "reason": "looks fine"})
        forged = http.post(
            "/ui/actions/approve",
            data={"version": "2", "reason": "looks fine", "csrf": "x"},
            headers={"Cookie": f"{COOKIE}=eyJ3aG8iOiJldmUifQ.bm90LWEtc2lnbmF0dXJl"},
        )
    assert refused.status_code == 401 and "Sign in first" in refused.text
    assert forged.status_code == 401
    assert champion(loop) == 1 and status_of(loop, 2) == "pending_approval"


def test_a_wrong_token_gets_no_session(server: BackgroundServer) -> None:
    with client(server) as http:
        answer = http.post("/ui/signin", data={"who": "eve", "token": "guess"})
        page = http.get("/ui")
    assert answer.status_code == 401 and "not the server&#39;s token" in answer.text
    assert "set-cookie" not in answer.headers
    assert "Sign in to act" in page.text


def test_a_bad_csrf_token_or_another_site_is_refused_and_changes_nothing(
    server: BackgroundServer, loop: Project
) -> None:
    with client(server) as http:
        sign_in(http, "mallory")
        wrong = http.post("/ui/actions/approve", data={"version": "2", "reason": "r", "csrf": "nope"})
        missing = http.post("/ui/actions/rollback", data={"reason": "r"})
    with client(server) as other:
        good = sign_in(other, "ana")
        elsewhere = other.post(
            "/ui/actions/approve",
            data={"version": "2", "reason": "r", "csrf": good},
            headers={"Origin": "https://evil.example"},
        )
        no_reason = other.post("/ui/actions/approve", data={"version": "2", "reason": " ", "csrf": good})
    assert wrong.status_code == 403 and "CSRF" in wrong.text
    assert missing.status_code == 403
    assert elsewhere.status_code == 403 and "another site" in elsewhere.text
    assert no_reason.status_code == 400 and "reason" in no_reason.text
    assert champion(loop) == 1 and status_of(loop, 2) == "pending_approval"


def test_approve_rollback_reject_and_ack_through_the_forms_as_the_cli_records_them(
    server: BackgroundServer, loop: Project
) -> None:
    with client(server) as http:
        csrf = sign_in(http, "ana")
        page = http.get("/ui").text
        assert 'action="/ui/actions/approve"' in page and "Approve v2" in page

        approved = http.post("/ui/actions/approve",
                             data={"version": "2", "reason": "replay holds up", "csrf": csrf})
        assert approved.status_code == 303 and approved.headers["location"] == "/ui?done=approved"
        assert champion(loop) == 2 and status_of(loop, 1) == "retired"
        assert "Approved: the version is the champion now." in http.get("/ui?done=approved").text
        # This server follows at once: the next prediction comes from v2.
        assert httpx.get(f"{server.url}/health").json()["version"] == 2

        back = http.post("/ui/actions/rollback", data={"reason": "complaints from ops", "csrf": csrf})
        assert back.status_code == 303, back.text
        assert champion(loop) == 1
        assert httpx.get(f"{server.url}/health").json()["version"] == 1

        # Approving what is no longer pending is the facade's refusal, shown as a 409 page.
        again = http.post("/ui/actions/approve", data={"version": "2", "reason": "x", "csrf": csrf})
        assert again.status_code == 409 and "not pending_approval" in again.text

        _, decision = loop.train(as_of=AS_OF)
        assert decision is not None and decision.outcome == "pending_approval"
        rejected = http.post("/ui/actions/reject",
                             data={"version": str(decision.version), "reason": "not now", "csrf": csrf})
        assert rejected.status_code == 303
        assert status_of(loop, decision.version) == "rejected"

        [alert] = [a for a in loop.alerts() if a["message"] == "temp drifted: PSI 0.31 > 0.2"]
        acked = http.post("/ui/actions/ack",
                          data={"alert": str(alert["id"]), "reason": "on it", "csrf": csrf})
        assert acked.status_code == 303

        # Under `serve` there are no pipelines to run.
        run = http.post("/ui/actions/run", data={"pipeline": "train", "reason": "x", "csrf": csrf})
        assert run.status_code == 404

        out = http.post("/ui/signout", data={"csrf": csrf})
        assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]

    events = [(e["action"], e["version"], e["by"], e["reason"]) for e in loop.history(10)]
    assert ("approved", 2, "ana") in [e[:3] for e in events]
    assert any(e[0] == "rolled_back" and e[2] == "ana" and "complaints from ops" in e[3] for e in events)
    assert any(e[0] == "rejected" and e[2] == "ana" and "not now" in e[3] for e in events)
    [acked_alert] = [a for a in loop.alerts() if a["id"] == alert["id"]]
    assert acked_alert["status"] == "acknowledged"
    assert (acked_alert["acked_by"], acked_alert["ack_reason"]) == ("ana", "on it")


def test_a_server_without_a_token_is_read_only(
    loop: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELLOOP_TOKEN", raising=False)
    with BackgroundServer(create_app(loop)) as running, client(running) as http:
        page = http.get("/ui")
        sign = http.post("/ui/signin", data={"who": "ana", "token": ""})
        act = http.post("/ui/actions/rollback", data={"reason": "r", "csrf": "x"})
    assert page.status_code == 200 and "read-only" in page.text and "/ui/signin" not in page.text
    assert sign.status_code == 404
    assert act.status_code == 403


def test_sessions_refuse_forged_tampered_and_expired_cookies() -> None:
    sessions = Sessions(lifetime=60)
    cookie, session = sessions.issue("ana", now=1000.0)
    assert sessions.read(cookie, now=1001.0) == session
    assert sessions.read(cookie, now=1061.0) is None  # expired
    payload, signature = cookie.split(".")
    assert sessions.read(f"{payload}x.{signature}", now=1001.0) is None
    assert Sessions(lifetime=60).read(cookie, now=1001.0) is None  # another server's key
    assert sessions.csrf_ok(session, sessions.csrf(session))
    other = sessions.issue("ana", now=1000.0)[1]
    assert not sessions.csrf_ok(other, sessions.csrf(session))  # bound to its session
    assert not sessions.csrf_ok(session, None)



class _Runtime:
    """What the app asks of `modelloop up`'s Runtime: start, stop, status, submit."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, Any]] = []

    def start(self) -> None: ...

    def stop(self, grace: float) -> None: ...

    def status(self) -> dict[str, Any]:
        return {"jobs": [{"id": "monitor", "name": "monitor (0 6 * * *)",
                          "next_run_at": "2026-12-01T06:00:00"}],
                "queued": [], "running": {}, "stopping": False}

    def submit(self, pipeline: str, request: Any) -> bool:
        self.submitted.append((pipeline, request))
        return True


def test_under_up_a_pipeline_runs_now_with_who_and_why(loop: Project) -> None:
    runtime = _Runtime()
    app = create_app(loop, token=TOKEN, runtime=runtime)  # type: ignore[arg-type]
    with BackgroundServer(app) as running, client(running) as http:
        csrf = sign_in(http, "cleo")
        page = http.get("/ui").text
        assert "monitor (0 6 * * *)" in page
        assert page.count('action="/ui/actions/run"') == 3  # train, monitor, score
        refused = http.post("/ui/actions/run", data={"pipeline": "deploy", "reason": "x", "csrf": csrf})
        queued = http.post("/ui/actions/run",
                           data={"pipeline": "monitor", "reason": "labels arrived", "csrf": csrf})
    assert refused.status_code == 400
    assert queued.status_code == 303 and queued.headers["location"] == "/ui?done=queued"
    [(pipeline, request)] = runtime.submitted
    assert pipeline == "monitor"
    assert (str(request.origin), request.trigger) == ("api", "dashboard, by cleo: labels arrived")


def test_the_cookie_is_secure_over_https_only() -> None:
    from modelloop.serving.sessions import cookie_header

    assert cookie_header("v", secure=True, max_age=60).endswith("; Secure")
    plain = cookie_header("v", secure=False, max_age=60)
    assert plain == f"{COOKIE}=v; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=60"
