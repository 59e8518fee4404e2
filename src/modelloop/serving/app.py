"""The scoring server: FastAPI on uvicorn, serving the champion with MLflow's protocol.

Every answer carries X-Model-Version and X-Request-Id; bad input gets a 400 that names the
column or the problem, never a 500; rows are logged durably before the answer leaves.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelloop.errors import BadRequest, DataError
from modelloop.project import LoadedModel, Project, new_request_id
from modelloop.serving.codecs import parse_invocation, parse_labels

logger = logging.getLogger("modelloop.serving")


def create_app(project: Project, model: LoadedModel | None = None) -> FastAPI:
    """The app for `project`'s champion (loaded now, so a broken model fails at start, not later)."""
    import modelloop

    served = model or project.load_champion()
    app = FastAPI(title=f"modelloop: {project.name}", version=modelloop.__version__)

    @app.middleware("http")
    async def identify(request: Request, call_next: Any) -> Response:
        request_id = request.headers.get("x-request-id") or new_request_id()
        request.state.request_id = request_id
        try:
            response: Response = await call_next(request)
        except Exception:  # a bug of ours: still answer in JSON, with the ids, and log it
            logger.exception("request %s failed", request_id)
            response = JSONResponse({"error_code": "INTERNAL_ERROR", "message": "internal server error; "
                                     f"see the server log for request {request_id}"}, status_code=500)
        response.headers["X-Model-Version"] = str(served.version)
        response.headers["X-Request-Id"] = request_id
        return response

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse(exc.to_json(), status_code=400)

    @app.exception_handler(DataError)
    async def bad_data(request: Request, exc: DataError) -> JSONResponse:
        return JSONResponse(
            {"error_code": "BAD_REQUEST", "problem": "bad_data", "message": str(exc)},
            status_code=400,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"error_code": "BAD_REQUEST", "problem": "bad_request", "message": str(exc.errors())},
            status_code=400,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error_code": "HTTP_ERROR", "message": str(exc.detail)}, status_code=exc.status_code
        )

    @app.get("/ping")
    async def ping() -> Response:
        return Response("\n", media_type="application/json")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": project.name, "version": served.version}

    @app.get("/version")
    async def version() -> dict[str, Any]:
        return {
            "modelloop": modelloop.__version__,
            "model": project.name,
            "version": served.version,
        }

    @app.post("/invocations")
    async def invocations(request: Request) -> JSONResponse:
        body = await request.body()
        frame = parse_invocation(body, request.headers.get("content-type"))
        predictions = await run_in_threadpool(served.score, frame, request.state.request_id)
        return JSONResponse({"predictions": predictions.tolist()})

    @app.post("/labels")
    async def labels(request: Request) -> JSONResponse:
        frame = parse_labels(await request.body())
        stored = await run_in_threadpool(project.ingest_labels, frame)
        return JSONResponse({"stored": stored})

    return app
