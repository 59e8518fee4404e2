"""The dashboard's routes (`/ui`): the page for everyone, the actions for whoever signed in.

Reading needs nothing: the page shows what `modelloop status`, `history`, `alerts` and `runs`
show. Acting (approve, reject, rollback, acknowledge an alert and, under `modelloop up`, run a
pipeline) needs a session from `/ui/signin`, which takes the server's token (see
`modelloop.serving.sessions`), and each form's CSRF token. Every action asks for a reason, is
done by the same `Project` method the CLI calls, with the signed-in name as `by`, so it is
recorded exactly as the command would record it.

Every answer forbids the browser to load anything from elsewhere (Content-Security-Policy), so
the page works with no network beyond this server, and a wrong token, a missing session or a
bad CSRF token is a 401/403 page that changed nothing, never a 5xx.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from modelloop.config import PIPELINES
from modelloop.errors import ModelloopError
from modelloop.orchestration import Origin, RunRequest
from modelloop.serving.auth import authorized
from modelloop.serving.dashboard import WINDOWS, dashboard_payload
from modelloop.serving.sessions import COOKIE, Session, Sessions, clean_name, cookie_header

if TYPE_CHECKING:
    from modelloop.orchestration.runtime import Runtime
    from modelloop.project import Project

logger = logging.getLogger("modelloop.serving")

#: A form is a few fields: anything bigger is not one of ours.
MAX_FORM_BYTES = 16 * 1024
#: The longest reason kept.
MAX_REASON = 500
#: A wrong token waits this long before its answer: guessing is slow.
WRONG_TOKEN_DELAY = 0.5

#: Nothing but this server: no script, no font, no image or style from elsewhere; forms post here.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}

ACTIONS = ("approve", "reject", "rollback", "ack", "run")

#: What a browser shows in the tab, and asks for on every page it opens (the reports too): a
#: loop, shipped here rather than answered with a 404 the browser's console reports.
FAVICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="5.5" '
    b'fill="none" stroke="#1c7ed6" stroke-width="2.5"/><path d="M11 1.5l2.5 2.8-3.6 1z" '
    b'fill="#1c7ed6"/></svg>'
)


class _Refused(Exception):
    """A request the dashboard turns down: its status and what to tell the person."""

    def __init__(self, status: int, title: str, message: str, *, sign_in: bool = False) -> None:
        super().__init__(message)
        self.status, self.title, self.message, self.sign_in = status, title, message, sign_in


def add_ui_routes(
    app: FastAPI,
    project: Project,
    *,
    token: str | None,
    runtime: Runtime | None = None,
    follow: Callable[[str], Awaitable[Any]] | None = None,
    sessions: Sessions | None = None,
) -> None:
    """Mount the dashboard on `app`. `token` is the server's (None: read-only, no sign-in);
    `follow(reason)` makes this server follow the champion alias at once after an action that
    moved it, rather than at the next `serving.reload_interval`."""
    from modelloop.reports import render_dashboard, render_sign_in, render_ui_message

    sessions = sessions or Sessions()

    def page(html: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def refused(exc: _Refused) -> HTMLResponse:
        return page(render_ui_message(exc.title, exc.message, status=exc.status, sign_in=exc.sign_in),
                    exc.status)

    def session_of(request: Request) -> Session | None:
        return sessions.read(request.cookies.get(COOKIE)) if token is not None else None

    def see_other(done: str, *, cookie: str | None = None) -> Response:
        response = RedirectResponse(f"/ui?done={done}", status_code=303, headers=SECURITY_HEADERS)
        if cookie is not None:
            response.headers["set-cookie"] = cookie
        return response

    def same_origin(request: Request) -> None:
        """A browser names the page a post comes from; another site's is refused outright."""
        origin = request.headers.get("origin")
        if origin is None or origin == "null":
            return
        parts = urlsplit(origin)
        if parts.netloc != request.headers.get("host", ""):
            raise _Refused(403, "Refused", "this form was sent from another site's page: nothing done")

    async def form(request: Request) -> dict[str, str]:
        kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise _Refused(415, "Not a form", "send the dashboard's form (application/x-www-form-urlencoded)")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise _Refused(413, "Too large", f"a form is at most {MAX_FORM_BYTES:,} bytes")
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            raise _Refused(400, "Not a form", "the form could not be read") from None
        return {key: values[-1] for key, values in fields.items()}

    def signed_in(request: Request, fields: dict[str, str]) -> Session:
        """The session behind a post, with its CSRF token checked; refuses otherwise."""
        if token is None:
            raise _Refused(403, "Read-only", "this server has no token (MODELLOOP_TOKEN): "
                           "the dashboard is read-only; act with the CLI")
        session = session_of(request)
        if session is None:
            raise _Refused(401, "Sign in first", "acting needs a session: sign in with the server's "
                           "token (your session may have expired or the server restarted)", sign_in=True)
        if not sessions.csrf_ok(session, fields.get("csrf")):
            raise _Refused(403, "Refused", "the form's CSRF token is not this session's: reload the "
                           "dashboard and try again; nothing was done")
        return session

    def reason_of(fields: dict[str, str]) -> str:
        reason = " ".join(fields.get("reason", "").split())
        if not reason:
            raise _Refused(400, "A reason is needed", "every action records why: write a reason")
        return reason[:MAX_REASON]

    def number(fields: dict[str, str], name: str, *, required: bool = True) -> int | None:
        text = fields.get(name, "").strip().lstrip("v")
        if not text and not required:
            return None
        if not text.isdigit() or int(text) < 1:
            raise _Refused(400, "Bad request", f"{name} must be a positive whole number, got {text!r}")
        return int(text)

    @app.get("/ui", include_in_schema=False)
    async def dashboard(request: Request) -> Response:
        status = runtime.status() if runtime is not None else None
        session = session_of(request)

        def build() -> str:  # on a worker thread: queries and rendering stay off the event loop
            return render_dashboard(
                dashboard_payload(project, runtime=status),
                session={"who": session.who, "csrf": sessions.csrf(session)} if session else None,
                can_sign_in=token is not None,
                done=request.query_params.get("done"),
            )

        return page(await asyncio.to_thread(build))

    @app.get("/ui/signin", include_in_schema=False)
    async def sign_in_form() -> Response:
        if token is None:
            return refused(_Refused(404, "Read-only", "this server has no token (MODELLOOP_TOKEN), "
                                    "so there is nothing to sign in with: the dashboard is read-only"))
        return page(render_sign_in(project.name))

    @app.post("/ui/signin", include_in_schema=False)
    async def sign_in(request: Request) -> Response:
        try:
            same_origin(request)
            fields = await form(request)
        except _Refused as exc:
            return refused(exc)
        if token is None:
            return refused(_Refused(404, "Read-only", "this server has no token: nothing to sign in with"))
        who = clean_name(fields.get("who", ""))
        if not authorized(f"Bearer {fields.get('token', '')}", token):
            await asyncio.sleep(WRONG_TOKEN_DELAY)
            return page(render_sign_in(project.name, error="That is not the server's token.", who=who), 401)
        if not who:
            return page(render_sign_in(project.name, error="Your name is needed: it is recorded "
                                       "with every action."), 400)
        value, _ = sessions.issue(who)
        logger.info("dashboard: %s signed in", who)
        return see_other("signed_in", cookie=cookie_header(
            value, secure=request.url.scheme == "https", max_age=sessions.lifetime))

    @app.post("/ui/signout", include_in_schema=False)
    async def sign_out(request: Request) -> Response:
        try:
            same_origin(request)
            signed_in(request, await form(request))
        except _Refused as exc:
            return refused(exc)
        return see_other("signed_out", cookie=cookie_header(
            "", secure=request.url.scheme == "https", max_age=0))

    @app.post("/ui/actions/{action}", include_in_schema=False)
    async def act(action: str, request: Request) -> Response:
        try:
            same_origin(request)
            if action not in ACTIONS:
                raise _Refused(404, "No such action", f"expected one of {', '.join(ACTIONS)}")
            fields = await form(request)
            session = signed_in(request, fields)
            reason = reason_of(fields)
            done = await _do(action, fields, session.who, reason)
        except _Refused as exc:
            return refused(exc)
        except ModelloopError as exc:
            # What the CLI would print and exit 1 on: the facade refused, nothing changed.
            return refused(_Refused(409, f"Could not {action}", str(exc)))
        return see_other(done)

    async def _do(action: str, fields: dict[str, str], who: str, reason: str) -> str:
        if action == "approve":
            version = number(fields, "version")
            await asyncio.to_thread(project.approve, int(version or 0), reason=reason, by=who)
            logger.info("dashboard: %s approved version %s: %s", who, version, reason)
            await _follow(f"approved from the dashboard by {who}")
            return "approved"
        if action == "reject":
            version = number(fields, "version")
            await asyncio.to_thread(project.reject, int(version or 0), reason=reason, by=who)
            logger.info("dashboard: %s rejected version %s: %s", who, version, reason)
            return "rejected"
        if action == "rollback":
            to = number(fields, "to", required=False)
            await asyncio.to_thread(lambda: project.rollback(reason=reason, by=who, to=to))
            logger.info("dashboard: %s rolled back: %s", who, reason)
            await _follow(f"rolled back from the dashboard by {who}")
            return "rolled_back"
        if action == "ack":
            alert = number(fields, "alert")
            await asyncio.to_thread(project.ack_alert, int(alert or 0), reason=reason, by=who)
            return "acknowledged"
        pipeline = fields.get("pipeline", "")
        if runtime is None:
            raise _Refused(404, "No pipelines here", "pipelines run under `modelloop up` "
                           "(this server only serves: `modelloop serve`)")
        if pipeline not in PIPELINES:
            raise _Refused(400, "No such pipeline", f"expected one of {', '.join(PIPELINES)}")
        trigger = f"dashboard, by {who}: {reason}"
        queued = runtime.submit(pipeline, RunRequest(origin=Origin.API, trigger=trigger))
        return "queued" if queued else "joined"

    async def _follow(reason: str) -> None:
        if follow is None:
            return
        try:
            await follow(reason)
        except Exception as exc:  # the registry moved; this server catches up at its next check
            logger.warning("could not follow the champion at once: %s", exc)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(FAVICON, media_type="image/svg+xml",
                        headers={"cache-control": "max-age=86400"})

    @app.get("/ui/reports/{run_id}", include_in_schema=False)
    async def report(run_id: int) -> Response:
        path = await asyncio.to_thread(_report_path, project, run_id)
        if path is None:
            return refused(_Refused(404, "No report", f"monitoring run {run_id} has no report here"))
        return page(await asyncio.to_thread(path.read_text, encoding="utf-8"))


def _report_path(project: Project, run_id: int) -> Path | None:
    """A monitoring run's HTML report, only if it lies in the project's reports folder: the
    path comes from the database, and the server never serves a file elsewhere."""
    for row in project.monitoring_history(limit=WINDOWS * 10):
        if row["id"] != run_id:
            continue
        found = (row.get("result") or {}).get("report_html")
        if not found:
            return None
        path = Path(str(found)).resolve()
        root = project.reports_dir.resolve()
        if path.is_file() and path.suffix == ".html" and path.is_relative_to(root):
            return path
        return None
    return None
