"""The Open Inference Protocol (v2: KServe's, Triton's and MLServer's REST API) beside MLflow's.

One prediction path: a v2 infer body decodes into the same plain `Columns` as a POST /invocations
body (one input per column), which the version's `RequestValidator` checks and the micro-batcher
scores and logs before the answer leaves. Only the codec and the routes are v2's own.

JSON tensors only: a body in the binary tensor extension (the Inference-Header-Content-Length
header) is refused with a message saying how to send JSON. Errors have the protocol's shape,
`{"error": "<message>"}`, with a 4xx for the client's mistakes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from modelloop.errors import BadRequest, shown
from modelloop.serving.codecs import OFFLOAD_BYTES, Columns, loads
from modelloop.serving.holder import ServedModel
from modelloop.serving.validation import ValidRows, valid_request_id

#: The one output every served model has: what POST /invocations answers as "predictions".
OUTPUT = "predictions"
PLATFORM = "mlflow-pyfunc"

_INTEGERS = {
    "INT8": (-(2**7), 2**7),
    "INT16": (-(2**15), 2**15),
    "INT32": (-(2**31), 2**31),
    "INT64": (-(2**63), 2**63),
    "UINT8": (0, 2**8),
    "UINT16": (0, 2**16),
    "UINT32": (0, 2**32),
    "UINT64": (0, 2**64),
}
_FLOATS = ("FP16", "FP32", "FP64")
#: The protocol's datatypes a JSON tensor can carry (BF16 travels as binary data only).
DATATYPES = ("BOOL", *_INTEGERS, *_FLOATS, "BYTES")
#: tritonclient writes a missing number as a bare NaN, which is not JSON; outside strings it is
#: read as null (a missing value, which the validator then allows or refuses per the contract).
_NAN = re.compile(rb'("(?:[^"\\]|\\.)*")|-?\bNaN\b')
_BINARY = (
    "binary tensor data is not supported: send JSON tensors "
    '(with tritonclient: set_data_from_numpy(..., binary_data=False) and InferRequestedOutput("'
    + OUTPUT
    + '", binary_data=False))'
)


def _accepts(datatype: str) -> Callable[[Any], bool]:
    """Which JSON values a tensor of `datatype` may hold (null, a missing value, aside)."""
    if datatype == "BYTES":
        return lambda v: type(v) is str
    if datatype == "BOOL":
        return lambda v: v is True or v is False
    if datatype in _FLOATS:
        return lambda v: type(v) is float or type(v) is int
    low, high = _INTEGERS[datatype]
    return lambda v: type(v) is int and low <= v < high


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a fractional number"
    if isinstance(value, dict):
        return "an object"
    return "a list"


def _short(value: Any) -> str:
    text = shown(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        if b"NaN" not in body:
            return loads(body)  # raises the codec's BadRequest, which says where
    try:
        return orjson.loads(_NAN.sub(lambda m: m.group(1) or b"null", body))
    except orjson.JSONDecodeError:
        return loads(body)


def _flat(data: Any, name: str) -> list[Any]:
    """An input's values, row-major: flat, or nested as a [n, 1] tensor's rows."""
    if not isinstance(data, list):
        raise BadRequest(
            f'input {name!r}: "data" must be a list of values, flat or nested',
            column=name,
            problem="bad_format",
        )
    if not any(isinstance(v, list) for v in data):
        return data
    values: list[Any] = []
    for v in data:
        if not isinstance(v, list):
            values.append(v)
            continue
        for w in v:
            if isinstance(w, list):
                raise BadRequest(
                    f"input {name!r}: data nests deeper than a shape [n] or [n, 1] tensor",
                    column=name,
                    problem="bad_shape",
                )
            values.append(w)
    return values


def _rows(shape: Any, name: str) -> int:
    """The number of rows a one-column shape, [n] or [n, 1], holds."""
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(type(d) is int and d >= 0 for d in shape)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        raise BadRequest(
            f"input {name!r}: the shape must be [n] or [n, 1] (one column of n rows), got {_short(shape)}",
            column=name,
            problem="bad_shape",
        )
    rows: int = shape[0]
    return rows


def _input(tensor: Any, i: int) -> tuple[str, list[Any]]:
    if not isinstance(tensor, dict):
        raise BadRequest(
            f'inputs[{i}] must be an object with "name", "shape", "datatype" and "data"', problem="bad_format"
        )
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f'inputs[{i}] has no "name" (the column it holds)', problem="bad_format")
    parameters = tensor.get("parameters")
    if isinstance(parameters, dict) and "binary_data_size" in parameters:
        raise BadRequest(f"input {name!r}: {_BINARY}", column=name, problem="binary_data", status=415)
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        raise BadRequest(
            f"input {name!r}: unknown datatype {_short(datatype)}; send one of {', '.join(DATATYPES)}",
            column=name,
            problem="bad_datatype",
        )
    if "data" not in tensor:
        raise BadRequest(f'input {name!r} has no "data"', column=name, problem="bad_format")
    rows = _rows(tensor.get("shape"), name)
    values = _flat(tensor["data"], name)
    if len(values) != rows:
        raise BadRequest(
            f"input {name!r}: its shape {tensor['shape']} holds {rows} value(s) but its data has "
            f"{len(values)}",
            column=name,
            problem="bad_shape",
        )
    ok = _accepts(datatype)
    for position, value in enumerate(values):
        if value is not None and not ok(value):
            wanted = "text" if datatype == "BYTES" else "a number" if datatype != "BOOL" else "true or false"
            if datatype in _INTEGERS and type(value) is int:
                wanted = f"an integer in {datatype}'s range"
            raise BadRequest(
                f"input {name!r} is {datatype}, so its data must be {wanted}, but value {position} is "
                f"{_kind(value)}: {_short(value)}",
                column=name,
                problem="wrong_type",
            )
    return name, values


def parse_infer(body: bytes) -> tuple[Columns, str | None]:
    """A v2 infer request's inputs as named columns (for the `RequestValidator`), and its "id".

    Each input is one column: shape [n] or [n, 1], data flat or nested. Null (or tritonclient's
    NaN) is a missing value. Every way the body breaks the protocol is a BadRequest naming the
    input.
    """
    payload = _json(body)
    if not isinstance(payload, dict):
        raise BadRequest('the body must be a JSON object with "inputs"', problem="bad_format")
    request_id = payload.get("id")
    if request_id is not None and not valid_request_id(request_id):
        raise BadRequest(
            f'"id" must be 1 to 128 letters, digits or . _ : - (it is logged with the rows), '
            f"got {_short(request_id)}",
            problem="bad_request_id",
        )
    parameters = payload.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise BadRequest('"parameters" must be an object', problem="bad_format")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest(
            '"inputs" must be a non-empty list, one tensor per column, e.g. '
            '[{"name": "hour", "shape": [1], "datatype": "FP64", "data": [5]}]',
            problem="bad_format",
        )
    _check_outputs(payload.get("outputs"))
    columns: dict[str, list[Any]] = {}
    for i, tensor in enumerate(inputs):
        name, values = _input(tensor, i)
        if name in columns:
            raise BadRequest(
                f"input {name!r} appears more than once", column=name, problem="duplicate_column"
            )
        columns[name] = values
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name!r} {n}" for name, n in list(lengths.items())[:10])
        raise BadRequest(
            f"every input must hold the same number of rows; got {listed}",
            column=next(iter(lengths)),
            problem="bad_shape",
        )
    return Columns(columns, next(iter(lengths.values()))), request_id


def _check_outputs(outputs: Any) -> None:
    if outputs is None:
        return
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise BadRequest(
            '"outputs" must be a list of objects, e.g. [{"name": "predictions"}]', problem="bad_format"
        )
    for output in outputs:
        if output.get("name") != OUTPUT:
            raise BadRequest(
                f"unknown output {_short(output.get('name'))}: the model has one output, {OUTPUT!r}",
                problem="bad_format",
            )


def infer_response(model_name: str, version: int, request_id: str, predictions: list[float]) -> bytes:
    """The v2 answer: one FP64 output, the numbers POST /invocations answers for the same rows."""
    return orjson.dumps(
        {
            "model_name": model_name,
            "model_version": str(version),
            "id": request_id,
            "outputs": [
                {"name": OUTPUT, "datatype": "FP64", "shape": [len(predictions)], "data": predictions}
            ],
        }
    )


def model_metadata(model: ServedModel, versions: list[int]) -> dict[str, Any]:
    """What a client needs to build a request: one input per feature, typed from the contract.

    The id and timestamp columns are optional (logged when sent, as with MLflow's protocol), so
    they are named in `parameters` rather than listed as inputs a request must carry.
    """
    validator = model.validator
    return {
        "name": model.name,
        "versions": [str(v) for v in sorted(versions)],
        "platform": PLATFORM,
        "inputs": [{"name": c, "datatype": "FP64", "shape": [-1]} for c in validator.numeric]
        + [{"name": c, "datatype": "BYTES", "shape": [-1]} for c in validator.categorical],
        "outputs": [{"name": OUTPUT, "datatype": "FP64", "shape": [-1]}],
        # The protocol's parameter values are scalars: the optional columns as one string.
        "parameters": {
            "optional_inputs": ",".join([validator.id_column, validator.timestamp_column]),
            "task": model.contract.task,
        },
    }


def _answer(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str) -> Response:
    return _answer({"error": message}, status)


def _v2_error(response: Response) -> Response:
    """The app's answer to a failed request in the protocol's shape, `{"error": message}`, with
    its status and headers (a 413's "connection: close" included); a body-less one as it is."""
    try:
        body = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return response
    if not isinstance(body, dict) or "message" not in body:
        return response
    reshaped = _error(response.status_code, str(body["message"]))
    for key, value in response.headers.items():
        if key not in ("content-length", "content-type"):
            reshaped.headers[key] = value
    return reshaped


def _decode(model: ServedModel, body: bytes) -> tuple[ValidRows, str | None]:
    columns, request_id = parse_infer(body)
    return model.validator.validate(columns), request_id


class _NotServed(Exception):
    """A model name or version this server does not serve: a 404 whose message names what it does."""


_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
_WHY = {
    400: "the request breaks the protocol or the data contract; the message names the input",
    404: "the model name or version is not served here; the message names what is",
    408: "the body did not arrive within serving.body_timeout",
    413: "the body is larger than serving.max_body",
    415: "binary tensor data or a compressed body: send JSON tensors, uncompressed",
    500: "the model failed on rows that passed validation (a bug; see the server log)",
    503: "the prediction log could not be written; nothing was acknowledged",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {
        code: {"description": _WHY[code], "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
        for code in codes
    }


_TENSOR: dict[str, Any] = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 2},
        "datatype": {"type": "string", "enum": list(DATATYPES)},
        "data": {"type": "array"},
        "parameters": {"type": "object"},
    },
}
INFER_BODY: dict[str, Any] = {
    "required": True,
    "description": (
        "One input per column, each shape [n] or [n, 1] with its data flat or nested (as "
        "tritonclient sends it with binary_data=False). Every feature is required; the id and "
        "timestamp columns are optional and logged when sent. Null is a missing value."
    ),
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "parameters": {"type": "object"},
                    "inputs": {"type": "array", "items": _TENSOR, "minItems": 1},
                    "outputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"name": {"type": "string", "enum": [OUTPUT]}},
                        },
                    },
                },
            },
            "example": {
                "id": "req-1",
                "inputs": [
                    {"name": "hour", "shape": [2], "datatype": "FP64", "data": [5, 20]},
                    {"name": "carrier", "shape": [2, 1], "datatype": "BYTES", "data": [["UA"], ["B6"]]},
                ],
            },
        }
    },
}


def add_oip_routes(
    app: FastAPI,
    *,
    name: str,
    loaded: Callable[[], dict[int, ServedModel]],
    current: Callable[[], ServedModel],
    read_body: Callable[[Request], Awaitable[bytes]],
    score: Callable[[ServedModel, ValidRows, str], Awaitable[list[float]]],
    error_response: Callable[[Exception, str], Response],
    opened: Callable[[], None],
    closed: Callable[[], None],
) -> None:
    """Serve the protocol's routes for model `name` on `app`.

    `loaded` gives the versions the server holds, `current` the one an unversioned request gets;
    `read_body`, `score` and `error_response` are the app's own (its size limit and deadline,
    its micro-batcher and prediction log, its answer to every request error), so a v2 request
    takes the path a POST /invocations takes. `opened` and `closed` bracket each infer request
    (the batcher's count of open requests): without them concurrent v2 clients would each look
    like a lone client to the batcher and be scored one by one instead of together.
    """
    import modelloop

    def find(model_name: str, version: str | None) -> ServedModel:
        if model_name != name:
            raise _NotServed(f"model {_short(model_name)} is not served here; this server serves {name!r}")
        if version is None:
            return current()
        models = loaded()
        if version.isascii() and version.isdigit() and len(version) < 19 and int(version) in models:
            return models[int(version)]
        versions = ", ".join(str(v) for v in sorted(models))
        raise _NotServed(
            f"version {_short(version)} of model {name!r} is not loaded here; loaded: {versions}"
        )

    async def metadata(model_name: str, version: str | None) -> Response:
        try:
            model = find(model_name, version)
        except _NotServed as missing:
            return _error(404, str(missing))
        return _answer(model_metadata(model, list(loaded())))

    async def ready(model_name: str, version: str | None) -> Response:
        try:
            find(model_name, version)
        except _NotServed as missing:
            return _error(404, str(missing))
        return _answer({})

    async def infer(request: Request, model_name: str, version: str | None) -> Response:
        request_id: str = request.state.request_id
        try:
            model = find(model_name, version)
        except _NotServed as missing:
            return _error(404, str(missing))
        opened()
        try:
            if "inference-header-content-length" in request.headers:
                raise BadRequest(_BINARY, problem="binary_data", status=415)
            encoding = request.headers.get("content-encoding", "identity").strip().lower()
            if encoding != "identity":
                raise BadRequest(
                    f"Content-Encoding {_short(encoding)} is not supported: send the body uncompressed",
                    problem="unsupported_media_type",
                    status=415,
                )
            body = await read_body(request)
            if len(body) > OFFLOAD_BYTES:
                rows, given = await asyncio.to_thread(_decode, model, body)
            else:
                rows, given = _decode(model, body)
            request_id = given or request_id
            predictions = await score(model, rows, request_id)
        except Exception as exc:
            # Not swallowed: error_response answers every request error and re-raises the rest
            # (a bug of ours), which the app answers with a 500 naming the request id.
            return _v2_error(error_response(exc, request_id))
        finally:
            closed()
        return Response(
            infer_response(name, model.version, request_id, predictions),
            media_type="application/json",
            headers={"x-model-version": str(model.version), "x-request-id": request_id},
        )

    tags: list[str | Enum] = ["Open Inference Protocol v2"]

    @app.get("/v2/health/live", summary="v2: the server is live", tags=tags)
    async def live() -> Response:
        return _answer({})

    @app.get(
        "/v2/health/ready",
        summary="v2: the server is ready (a model is loaded)",
        tags=tags,
        responses=_errors(503),
    )
    async def server_ready() -> Response:
        return _answer({}) if loaded() else _error(503, "no model is loaded yet")

    @app.get("/v2", summary="v2: server metadata", tags=tags)
    async def server_metadata() -> Response:
        return _answer({"name": "modelloop", "version": modelloop.__version__, "extensions": []})

    @app.get(
        "/v2/models/{model_name}",
        summary="v2: the served model's inputs and outputs",
        tags=tags,
        responses=_errors(404),
    )
    async def get_metadata(model_name: str) -> Response:
        return await metadata(model_name, None)

    @app.get(
        "/v2/models/{model_name}/versions/{version}",
        summary="v2: a loaded version's inputs and outputs",
        tags=tags,
        responses=_errors(404),
    )
    async def get_version_metadata(model_name: str, version: str) -> Response:
        return await metadata(model_name, version)

    @app.get(
        "/v2/models/{model_name}/ready", summary="v2: the model is ready", tags=tags, responses=_errors(404)
    )
    async def model_ready(model_name: str) -> Response:
        return await ready(model_name, None)

    @app.get(
        "/v2/models/{model_name}/versions/{version}/ready",
        summary="v2: the version is ready",
        tags=tags,
        responses=_errors(404),
    )
    async def version_ready(model_name: str, version: str) -> Response:
        return await ready(model_name, version)

    infer_errors = _errors(400, 404, 408, 413, 415, 500, 503)

    @app.post(
        "/v2/models/{model_name}/infer",
        summary="v2: score rows with the served version",
        tags=tags,
        openapi_extra={"requestBody": INFER_BODY},
        responses=infer_errors,
    )
    async def model_infer(request: Request, model_name: str) -> Response:
        return await infer(request, model_name, None)

    @app.post(
        "/v2/models/{model_name}/versions/{version}/infer",
        summary="v2: score rows with a loaded version",
        tags=tags,
        openapi_extra={"requestBody": INFER_BODY},
        responses=infer_errors,
    )
    async def version_infer(request: Request, model_name: str, version: str) -> Response:
        return await infer(request, model_name, version)
