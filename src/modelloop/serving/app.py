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
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelloop.errors import BadRequest, DataError
from modelloop.serving.batcher import LogUnavailable, MicroBatcher, ScoringFailed
from modelloop.serving.codecs import parse_invocation, parse_labels
from modelloop.serving.holder import ModelHolder
from modelloop.serving.logger import PredictionLogger
from modelloop.serving.oip import add_oip_routes
from modelloop.serving.openapi import INVOCATIONS_BODY, LABELS_BODY, error_responses
from modelloop.serving.validation import validate_labels

if TYPE_CHECKING:
    from modelloop.project import Project

logger = logging.getLogger("modelloop.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
#: Bodies larger than this are decoded on a thread, so one big request does not stall the loop.
_OFFLOAD_BYTES = 256 * 1024


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


class ScoringApp:
    """The ASGI app `modelloop serve` runs: the FastAPI app behind a pure ASGI layer that gives
    every response X-Request-Id and X-Model-Version and sends the hot route straight to its
    handler. `holder` is the served version (swap it to serve another), `batcher` its batcher.

    A client's X-Request-Id is kept when it is a sane token (it ends up in the log); anything
    else gets a 400 before the app runs. An exception that escapes the app (a bug of ours) still
    gets a JSON 500 naming the request id, and one log line with its traceback.
    """

    def __init__(self, app: Any, holder: ModelHolder, batcher: MicroBatcher, fast: Any) -> None:
        self.app = app
        self.holder = holder
        self.batcher = batcher
        self._fast = fast

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                given = value.decode("latin-1")
                break
        request_id = given if given is not None and _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        version = str(self.holder.version).encode()
        started = False

        async def send_with_ids(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"x-request-id" not in names:
                    headers.append((b"x-request-id", request_id.encode()))
                if b"x-model-version" not in names:
                    headers.append((b"x-model-version", version))
                message["headers"] = headers
            await send(message)

        if given is not None and request_id != given:
            response = _error(
                400,
                "BAD_REQUEST",
                "X-Request-Id must be 1 to 128 letters, digits or . _ : - (it is logged with the rows)",
                "bad_request_id",
            )
            await response(scope, receive, send_with_ids)
            return
        try:
            if scope["path"] == "/invocations" and scope["method"] == "POST":
                # The hot route, straight to its handler: no routing, no Request object, no
                # dependency solving; FastAPI still documents it (and would serve it the same).
                answer = await self._fast(scope, receive, request_id)
                if isinstance(answer, _Predictions):
                    started = True
                    await answer.send(send, request_id)
                else:
                    await answer(scope, receive, send_with_ids)
            else:
                await self.app(scope, receive, send_with_ids)
        except Exception:
            logger.exception("request %s failed", request_id)
            if not started:
                response = _error(
                    500,
                    "INTERNAL_ERROR",
                    f"internal server error; see the server log for request {request_id}",
                )
                await response(scope, receive, send_with_ids)


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


def create_app(project: Project, *, holder: ModelHolder | None = None) -> ScoringApp:
    """The ASGI app for `project`'s champion (loaded and warmed now, so a broken model fails at
    start, not on the first request)."""
    import modelloop

    settings = project.config.serving
    holder = holder or ModelHolder(project.load_served_model())
    batcher = MicroBatcher(
        PredictionLogger(project.logs),
        max_batch=settings.max_batch,
        max_wait_ms=settings.max_wait_ms,
    )
    max_body = int(settings.max_body)
    body_timeout = settings.body_timeout.total_seconds()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        replayed = await asyncio.to_thread(project.logs.recover)
        if replayed:
            logger.warning(
                "replayed %d logged row(s) a previous server acknowledged before it stopped", replayed
            )
        await batcher.start()
        _quiet_gc()
        try:
            yield
        finally:
            await batcher.stop()
            await asyncio.to_thread(project.logs.close)

    app = FastAPI(
        title=f"modelloop: {project.name}",
        version=modelloop.__version__,
        lifespan=lifespan,
        docs_url="/docs",
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
            if len(body) > _OFFLOAD_BYTES:
                rows = await asyncio.to_thread(_decode, model, body, content_type)
            else:
                rows = _decode(model, body, content_type)
            predictions = await batcher.score(model, rows, request_id)
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

    add_oip_routes(
        app,
        name=project.name,
        loaded=lambda: {holder.version: holder.current},
        current=lambda: holder.current,
        read_body=lambda request: _read_body(
            request.headers.get("content-length"), request.receive, max_body, body_timeout
        ),
        score=batcher.score,
        error_response=error_response,
        opened=batcher.opened,
        closed=batcher.closed,
    )
    return ScoringApp(app, holder, batcher, score_request)


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
