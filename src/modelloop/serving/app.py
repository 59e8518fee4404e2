"""The scoring server: FastAPI on uvicorn, serving the champion with MLflow's scoring protocol.

The request path is lean on purpose: a body read with a size limit and a deadline, decoded by
orjson into plain columns, validated value by value against the version's compiled contract,
then handed to the micro-batcher, which scores concurrent requests together and answers only
once their rows are durable in the prediction log. FastAPI still routes and documents every
endpoint (the OpenAPI schema describes the bodies the fast routes read themselves).

Every answer carries X-Model-Version (the version that scored it) and X-Request-Id; a bad
request is a JSON 4xx naming the problem, never a 5xx, and never leaves a row in the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelloop.config import PIPELINES
from modelloop.errors import BadRequest, DataError, ModelloopError
from modelloop.orchestration import Origin, RunRequest
from modelloop.serving import presence
from modelloop.serving.auth import authorized, protected, token_from_env
from modelloop.serving.batcher import LogUnavailable, MicroBatcher, ScoringFailed, model_frame
from modelloop.serving.codecs import OFFLOAD_BYTES, parse_invocation, parse_labels
from modelloop.serving.follower import Bake, ChampionFollower, Guard
from modelloop.serving.holder import ModelHolder, ServedModel
from modelloop.serving.logger import PredictionLogger
from modelloop.serving.metrics import CONTENT_TYPE, ServingMetrics, route_of
from modelloop.serving.oip import add_oip_routes
from modelloop.serving.openapi import INVOCATIONS_BODY, LABELS_BODY, error_responses
from modelloop.serving.shadow import ShadowScorer
from modelloop.serving.ui import add_ui_routes
from modelloop.serving.validation import ValidRows, valid_request_id, validate_labels

if TYPE_CHECKING:
    from modelloop.orchestration.runtime import Runtime
    from modelloop.project import Project

logger = logging.getLogger("modelloop.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]



class _JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class _Predictions:
    """A scored request's answer, sent as two raw ASGI messages: the hot path's one response."""

    __slots__ = ("body", "version")

    def __init__(self, predictions: list[float], version: int) -> None:
        self.body = orjson.dumps({"predictions": predictions})
        self.version = str(version).encode()

    async def send(self, send: Send, request_id: str) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode()),
            (b"x-request-id", request_id.encode()),
            (b"x-model-version", self.version),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})

    def response(self) -> Response:
        """The same answer as a Response (for the route FastAPI serves and documents)."""
        headers = {"x-model-version": self.version.decode()}
        return Response(self.body, media_type="application/json", headers=headers)


class _BodyTooLarge(Exception):
    pass


class _BodyTimeout(Exception):
    pass


class _Disconnected(Exception):
    pass


#: What a request can fail with short of a bug: each has its answer in `error_response`.
_REQUEST_ERRORS = (
    BadRequest,
    DataError,
    _BodyTooLarge,
    _BodyTimeout,
    _Disconnected,
    ScoringFailed,
    LogUnavailable,
)


def _error(status: int, code: str, message: str, problem: str | None = None, **extra: Any) -> _JSON:
    body: dict[str, Any] = {"error_code": code, "message": message}
    if problem is not None:
        body["problem"] = problem
    body.update(extra)
    return _JSON(body, status_code=status)


#: Routes whose answers judge a version during the bake (the model answered them).
_SCORING_ROUTES = frozenset({"/invocations", "/v2/models/{name}/infer"})


class ScoringApp:
    """The ASGI app `modelloop serve` runs: the FastAPI app behind a pure ASGI layer that gives
    every response X-Request-Id and X-Model-Version and sends the hot route straight to its
    handler. `holder` is the served version (swap it to serve another), `batcher` its batcher,
    `follower` keeps the holder on the registry's champion, `guard` bakes each swap.

    A client's X-Request-Id is kept when it is a sane token (it ends up in the log); anything
    else gets a 400 before the app runs. With a token (`MODELLOOP_TOKEN`), the routes that change
    state need it (`serving.auth`). Every answer is counted for /metrics and, for the scoring
    routes, by the guard. An exception that escapes the app (a bug of ours) still gets a JSON 500
    naming the request id, and one log line with its traceback.
    """

    def __init__(
        self,
        app: Any,
        holder: ModelHolder,
        batcher: MicroBatcher,
        fast: Any,
        *,
        follower: ChampionFollower | None = None,
        guard: Guard | None = None,
        metrics: ServingMetrics | None = None,
        token: str | None = None,
        auth: str = "writes",
    ) -> None:
        self.app = app
        self.holder = holder
        self.batcher = batcher
        self.follower = follower
        self.guard = guard
        self.metrics = metrics
        self.token = token
        self.auth = auth
        #: Where the server listens, for `modelloop status` (set by whoever starts it).
        self.url: str | None = None
        self._fast = fast

    def _observe(self, path: str, status: int, version: bytes | None, seconds: float) -> None:
        """One answer, counted: /metrics by route, status and version; the bake's judgement."""
        number = int(version) if version else None
        route = route_of(path)
        if self.metrics is not None:
            self.metrics.answered(route, status, number, seconds)
        if self.guard is not None and number is not None and route in _SCORING_ROUTES:
            self.guard.record(number, status, seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived = time.perf_counter()
        given = None
        authorization = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                given = value.decode("latin-1")
            elif key == b"authorization":
                authorization = value.decode("latin-1")
        request_id = given if given is not None and valid_request_id(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        exchange = _Exchange(str(self.holder.version).encode())

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.started = True
                exchange.status = int(message["status"])
                headers = list(message.get("headers", []))
                names = {k.lower(): v for k, v in headers}
                if b"x-request-id" not in names:
                    headers.append((b"x-request-id", request_id.encode()))
                if b"x-model-version" in names:
                    exchange.version = names[b"x-model-version"]
                else:
                    headers.append((b"x-model-version", exchange.version))
                message["headers"] = headers
            await send(message)

        try:
            await self._dispatch(scope, receive, send, send_with_ids, exchange, request_id, given,
                                 authorization)
        finally:
            self._observe(scope["path"], exchange.status, exchange.version,
                          time.perf_counter() - arrived)

    async def _dispatch(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        send_with_ids: Send,
        exchange: _Exchange,
        request_id: str,
        given: str | None,
        authorization: str | None,
    ) -> None:
        if given is not None and request_id != given:
            response = _error(
                400,
                "BAD_REQUEST",
                "X-Request-Id must be 1 to 128 letters, digits or . _ : - (it is logged with the rows)",
                "bad_request_id",
            )
            await response(scope, receive, send_with_ids)
            return
        if (
            self.token is not None
            and protected(scope["path"], self.auth)
            and not authorized(authorization, self.token)
        ):
            message = (
                "this route needs the server's token: send Authorization: Bearer <token> "
                "(the token is MODELLOOP_TOKEN where the server runs)"
            )
            response = _error(401, "UNAUTHORIZED", message, "unauthorized", error=message)
            response.headers["www-authenticate"] = "Bearer"
            await response(scope, receive, send_with_ids)
            return
        try:
            if scope["path"] == "/invocations" and scope["method"] == "POST":
                # The hot route, straight to its handler: no routing, no Request object, no
                # dependency solving; FastAPI still documents it (and would serve it the same).
                answer = await self._fast(scope, receive, request_id)
                if isinstance(answer, _Predictions):
                    exchange.started, exchange.status, exchange.version = True, 200, answer.version
                    await answer.send(send, request_id)
                else:
                    await answer(scope, receive, send_with_ids)
            else:
                await self.app(scope, receive, send_with_ids)
        except Exception:
            logger.exception("request %s failed", request_id)
            if not exchange.started:
                response = _error(
                    500,
                    "INTERNAL_ERROR",
                    f"internal server error; see the server log for request {request_id}",
                )
                await response(scope, receive, send_with_ids)


class _Exchange:
    """One request's answer as the outer layer saw it: for /metrics and the bake."""

    __slots__ = ("started", "status", "version")

    def __init__(self, version: bytes) -> None:
        self.started = False
        self.status = 500  # what a request that never answered counts as
        self.version = version


async def _read_body(content_length: str | None, receive: Receive, limit: int, timeout: float) -> bytes:
    """The whole body, refusing more than `limit` bytes and a body still unfinished after
    `timeout` seconds (a client that never finishes must not hold a connection forever)."""
    if content_length is not None:
        if not content_length.isdigit():
            raise BadRequest("Content-Length is not a number", problem="bad_request")
        if int(content_length) > limit:
            raise _BodyTooLarge()
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Disconnected()
                chunk = message.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if size > limit:
                        raise _BodyTooLarge()
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise _BodyTimeout() from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class _CountedLogger(PredictionLogger):
    """The prediction logger, counting each batch's rows for /metrics."""

    def __init__(self, logs: Any, metrics: ServingMetrics) -> None:
        super().__init__(logs)
        self._rows = metrics.batch_rows

    def log(self, scored: Any) -> None:
        self._rows.observe(sum(s.rows.n_rows for s in scored))
        super().log(scored)


def _alias_version(project: Project, alias: str) -> int | None:
    found = project.registry.alias(project.name, alias)
    return found.version if found is not None else None


def create_app(
    project: Project,
    *,
    holder: ModelHolder | None = None,
    token: str | None = None,
    runtime: Runtime | None = None,
    stop_grace: float = 20.0,
) -> ScoringApp:
    """The ASGI app for `project`'s champion (loaded and warmed now, so a broken model fails at
    start, not on the first request). `token` (default `MODELLOOP_TOKEN`) guards the routes that
    change state (`serving.auth`). With a `runtime` (`modelloop up`) the app also runs the
    project's schedules and triggers and takes `POST /pipelines/{pipeline}`; a stop waits up to
    `stop_grace` seconds for a running pipeline, then records it interrupted."""
    import modelloop

    settings = project.config.serving
    holder = holder or ModelHolder(project.load_served_model())
    token = token if token is not None else token_from_env()
    metrics = ServingMetrics(project.name, project.config.task)
    metrics.served(holder.version, holder.current.load_seconds)
    backlog = getattr(project.logs, "backlog", None)  # the embedded log's write-ahead log
    if callable(backlog):
        metrics.gauge(
            "modelloop_wal_backlog_bytes",
            "Acknowledged rows still only in the write-ahead log, in bytes",
            lambda: float(backlog()[0]),
        )
        metrics.gauge(
            "modelloop_wal_flush_age_seconds",
            "Seconds since the write-ahead log last moved to Parquet (flush lag)",
            lambda: float(backlog()[1]),
        )
    batcher = MicroBatcher(
        _CountedLogger(project.logs, metrics),
        max_batch=settings.max_batch,
        max_wait_ms=settings.max_wait_ms,
    )
    max_body = int(settings.max_body)
    body_timeout = settings.body_timeout.total_seconds()
    shadow = (
        ShadowScorer(
            PredictionLogger(project.open_shadow_logs()),
            challenger=lambda: _alias_version(project, "challenger"),
            load=project.load_served_model,
            frame_of=model_frame,
        )
        if settings.shadow
        else None
    )
    presence_file: list[Any] = []
    started_at = time.time()

    def announce() -> None:
        """Tell `modelloop status` what this server serves (best effort: never fails a request)."""
        facts = {
            "url": web.url,
            "version": holder.version,
            "started_at": started_at,
            "swaps": [swap.to_dict() for swap in follower.swaps[-5:]],
            "bake": guard.status(),
            "shadow_version": shadow.version if shadow is not None else None,
            "follow_error": follower.last_error,
        }
        try:
            presence_file[:] = [presence.announce(project.home, project.name, facts)]
        except OSError as exc:
            logger.warning("cannot write the server's status file: %s", exc)

    def swapped(old: ServedModel, new: ServedModel, reason: str) -> None:
        guard.swapped(old, new, reason)
        metrics.served(new.version, new.load_seconds)
        metrics.swaps.labels("rollback" if reason.startswith("rollback") else "alias").inc()
        announce()
        if not reason.startswith("rollback"):  # a move made outside modelloop enters history
            asyncio.get_running_loop().create_task(reconcile_history())

    async def reconcile_history() -> None:
        from modelloop.gate.history import reconcile

        try:
            await asyncio.to_thread(reconcile, project.registry, project.db, project.name)
        except Exception as exc:  # history catches up at the next modelloop operation
            logger.warning("could not record the champion's move in the history: %s", exc)

    def breached(bake: Bake, evidence: dict[str, Any]) -> None:
        asyncio.get_running_loop().create_task(roll_back(bake, evidence))

    async def roll_back(bake: Bake, evidence: dict[str, Any]) -> None:
        """The registry first (every server follows it), then this server's own holder."""
        try:
            # Through the facade: under the same lock as gates, approvals and manual rollbacks.
            await asyncio.to_thread(
                project.rollback,
                reason=str(evidence["breach"]),
                by="server guardrails",
                evidence=evidence,
                expected_champion=bake.current.version,
            )
        except ModelloopError as exc:
            logger.error("the guardrails were breached (%s) but nothing was rolled back: %s",
                         evidence["breach"], exc)
            return
        except Exception:
            logger.exception("the guardrails were breached but the rollback failed")
            return
        if holder.version == bake.current.version:
            follower.swap_to(bake.previous, f"rollback: {evidence['breach']}")

    guard = Guard(
        guardrails=settings.guardrails,
        bake_seconds=settings.bake.total_seconds(),
        on_breach=breached,
    )
    follower = ChampionFollower(
        holder,
        champion=lambda: _alias_version(project, "champion"),
        load=project.load_served_model,
        interval=settings.reload_interval.total_seconds(),
        on_swap=swapped,
        on_tick=announce,
    )

    async def score(model: ServedModel, rows: ValidRows, request_id: str) -> list[float]:
        """Every request's one way to the model: batched, logged, counted, shadowed."""
        predictions = await batcher.score(model, rows, request_id)
        metrics.scored(model.version, predictions)
        if shadow is not None:
            shadow.submit(rows, request_id)
        return predictions

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        replayed = await asyncio.to_thread(project.logs.recover)
        if replayed:
            logger.warning(
                "replayed %d logged row(s) a previous server acknowledged before it stopped", replayed
            )
        await batcher.start()
        if shadow is not None:
            shadow.start()
        await follower.start()
        if runtime is not None:
            await asyncio.to_thread(runtime.start)
        announce()
        _quiet_gc()
        try:
            yield
        finally:
            if runtime is not None:
                await asyncio.to_thread(runtime.stop, stop_grace)
            for path in presence_file:
                presence.withdraw(path)
            await follower.stop()
            await batcher.stop()
            if shadow is not None:
                await asyncio.to_thread(shadow.stop)
                await asyncio.to_thread(shadow.close)
            await asyncio.to_thread(project.logs.close)

    app = FastAPI(
        title=f"modelloop: {project.name}",
        version=modelloop.__version__,
        lifespan=lifespan,
        docs_url="/docs" if settings.docs else None,
        redoc_url=None,
        default_response_class=_JSON,
    )

    def error_response(exc: Exception, request_id: str) -> Response:
        """The answer to every way a request can fail that is not a bug of ours."""
        if isinstance(exc, BadRequest):
            return _JSON(exc.to_json(), status_code=exc.status)
        if isinstance(exc, DataError):
            return _error(400, "BAD_REQUEST", str(exc), "bad_data")
        if isinstance(exc, _BodyTooLarge | _BodyTimeout):
            response = (
                _error(
                    413,
                    "PAYLOAD_TOO_LARGE",
                    f"the body is larger than serving.max_body ({max_body:,} bytes)",
                    "too_large",
                )
                if isinstance(exc, _BodyTooLarge)
                else _error(
                    408,
                    "REQUEST_TIMEOUT",
                    f"the body did not arrive within serving.body_timeout ({body_timeout:g} s)",
                    "body_timeout",
                )
            )
            response.headers["connection"] = "close"  # do not read the rest of it
            return response
        if isinstance(exc, _Disconnected):
            logger.info("client disconnected before sending its whole request %s", request_id)
            return Response(status_code=499)
        if isinstance(exc, ScoringFailed):
            return _error(500, "MODEL_ERROR", f"{exc}; see the server log for request {request_id}")
        if isinstance(exc, LogUnavailable):
            return _error(503, "LOG_UNAVAILABLE", f"{exc}; nothing was acknowledged, retry later")
        raise exc

    async def handled(request: Request, exc: Exception) -> Response:
        return error_response(exc, request.state.request_id)

    for kind in _REQUEST_ERRORS:
        app.add_exception_handler(kind, handled)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return _error(400, "BAD_REQUEST", str(exc.errors()), "bad_request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(exc.status_code, "HTTP_ERROR", str(exc.detail))

    @app.get("/ping", summary="Liveness, as MLflow's scoring server answers it")
    async def ping() -> Response:
        return Response("\n", media_type="application/json")

    @app.get("/health", summary="The model and the version being served")
    async def health() -> Response:
        return _JSON({"status": "ok", "model": project.name, "version": holder.version})

    @app.get("/version", summary="modelloop's version and the served model version")
    async def version() -> Response:
        return _JSON({"modelloop": modelloop.__version__, "model": project.name, "version": holder.version})

    async def score_request(scope: Scope, receive: Receive, request_id: str) -> Response | _Predictions:
        """POST /invocations, whole: an answer for every outcome, errors included."""
        model = holder.current
        batcher.opened()
        try:
            body = await _read_body(_header(scope, b"content-length"), receive, max_body, body_timeout)
            content_type = _header(scope, b"content-type")
            if len(body) > OFFLOAD_BYTES:
                rows = await asyncio.to_thread(_decode, model, body, content_type)
            else:
                rows = _decode(model, body, content_type)
            predictions = await score(model, rows, request_id)
        except _REQUEST_ERRORS as exc:
            return error_response(exc, request_id)
        finally:
            batcher.closed()
        return _Predictions(predictions, model.version)

    @app.post(
        "/invocations",
        summary="Score rows (MLflow's scoring protocol)",
        openapi_extra={"requestBody": INVOCATIONS_BODY},
        responses=error_responses(400, 408, 413, 415, 500, 503),
    )
    async def invocations(request: Request) -> Response:
        answer = await score_request(request.scope, request.receive, request.state.request_id)
        return answer.response() if isinstance(answer, _Predictions) else answer

    @app.post(
        "/labels",
        summary="Store ground truth for predictions already served",
        openapi_extra={"requestBody": LABELS_BODY},
        responses=error_responses(400, 408, 413, 415),
    )
    async def labels(request: Request) -> Response:
        length = request.headers.get("content-length")
        body = await _read_body(length, request.receive, max_body, body_timeout)
        columns = parse_labels(body, request.headers.get("content-type"))
        data = project.config.data
        ids, targets, skipped = validate_labels(
            columns,
            id_column=data.id_column,
            target=data.target,
            task=project.config.task,
            classes=(data.positive, data.negative),
            max_value_length=settings.max_value_length,
        )
        stored = await asyncio.to_thread(project.store_labels, ids, targets) if ids else 0
        return _JSON({"stored": stored, "skipped": skipped})

    @app.post("/admin/reload", summary="Follow the champion alias now (needs the token)")
    async def reload() -> Response:
        swap = await follower.check("asked by POST /admin/reload", force=True)
        return _JSON(
            {
                "version": holder.version,
                "swapped": swap.to_dict() if swap is not None else None,
                "error": follower.last_error,
            }
        )

    @app.get("/admin/status", summary="What this server holds: versions, the bake, swaps, shadow")
    async def admin_status() -> Response:
        return _JSON(
            {
                "model": project.name,
                "version": holder.version,
                "loaded": sorted(loaded()),
                "bake": guard.status(),
                "swaps": [swap.to_dict() for swap in follower.swaps],
                "follow_error": follower.last_error,
                "shadow": None
                if shadow is None
                else {"version": shadow.version, "scored": shadow.scored, "skipped": shadow.skipped,
                      "failed": shadow.failed},
            }
        )

    @app.post(
        "/pipelines/{pipeline}",
        summary="Run a pipeline now: train, monitor or score (needs the token; `modelloop up`)",
        status_code=202,
    )
    async def run_pipeline(pipeline: str, request: Request) -> Response:
        if runtime is None:
            return _error(
                404,
                "NOT_FOUND",
                "pipelines run under `modelloop up` (this server only serves: `modelloop serve`)",
                "no_runtime",
            )
        if pipeline not in PIPELINES:
            return _error(
                404,
                "NOT_FOUND",
                f"no pipeline {pipeline!r}: expected one of {', '.join(PIPELINES)}",
                "unknown_pipeline",
            )
        reason = request.query_params.get("reason", "").strip()[:500]
        trigger = f"POST /pipelines/{pipeline}" + (f": {reason}" if reason else "")
        queued = runtime.submit(pipeline, RunRequest(origin=Origin.API, trigger=trigger))
        message = (
            f"{pipeline} queued: follow it with GET /pipelines or `modelloop runs`"
            if queued
            else f"a {pipeline} run is already waiting to start; this request joins it"
        )
        return _JSON({"pipeline": pipeline, "queued": queued, "message": message}, status_code=202)

    @app.get("/pipelines", summary="What `modelloop up` schedules and runs, and the latest runs")
    async def pipelines(limit: int = 20) -> Response:
        if runtime is None:
            return _error(
                404,
                "NOT_FOUND",
                "pipelines run under `modelloop up` (this server only serves: `modelloop serve`)",
                "no_runtime",
            )
        limit = max(1, min(limit, 500))
        runs = await asyncio.to_thread(project.runs, limit=limit)
        return _JSON({**runtime.status(), "runs": runs})

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    def loaded() -> dict[int, ServedModel]:
        """The versions a request may name: the champion, the one it replaced while baking, and
        the challenger when it is shadowed."""
        models = guard.loaded(holder.current)
        challenger = shadow.model if shadow is not None else None
        if challenger is not None:
            models.setdefault(challenger.version, challenger)
        return models

    add_ui_routes(
        app,
        project,
        token=token,
        runtime=runtime,
        follow=lambda reason: follower.check(reason, force=True),
    )
    add_oip_routes(
        app,
        name=project.name,
        loaded=loaded,
        current=lambda: holder.current,
        read_body=lambda request: _read_body(
            request.headers.get("content-length"), request.receive, max_body, body_timeout
        ),
        score=score,
        error_response=error_response,
        opened=batcher.opened,
        closed=batcher.closed,
    )
    web = ScoringApp(
        app,
        holder,
        batcher,
        score_request,
        follower=follower,
        guard=guard,
        metrics=metrics,
        token=token,
        auth=settings.auth,
    )
    return web


def _quiet_gc() -> None:
    """Keep the garbage collector off the request path's tail latency.

    Everything loaded by now (MLflow, pandas, scikit-learn, the model: millions of objects)
    lives as long as the server; frozen, a full collection no longer walks it, which otherwise
    stalls a request for tens of milliseconds now and then. Requests make short-lived objects
    only, so young collections may run less often too.
    """
    import gc

    gc.collect()
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], 10_000), *threshold[1:])


def _decode(model: Any, body: bytes, content_type: str | None) -> Any:
    return model.validator.validate(parse_invocation(body, content_type))
