"""The Open Inference Protocol (v2): the codec turns every tensor layout a client sends into the
columns MLflow's protocol gives, and refuses every malformed tensor with a 400 naming its input;
on a real socket, v2 answers the numbers /invocations answers, logs the rows, and speaks the
protocol's error shape."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import modelloop
from modelloop import BadRequest
from modelloop.examples.server import BackgroundServer
from modelloop.project import Project
from modelloop.serving import create_app
from modelloop.serving.oip import infer_response, model_metadata, parse_infer


def tensor(name: str, data: Any, datatype: str = "FP64", shape: list[int] | None = None) -> dict[str, Any]:
    shape = [len(data)] if shape is None else shape
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def body(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def rejected(raw: bytes) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        parse_infer(raw)
    return caught.value


# -- the codec ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hour",
    [
        tensor("hour", [5.0, 20.0]),
        tensor("hour", [[5.0], [20.0]], shape=[2, 1]),  # nested, as a [n, 1] tensor
        tensor("hour", [[5.0], [20.0]], shape=[2]),
        tensor("hour", [5.0, 20.0], shape=[2, 1]),  # flat data of a [n, 1] tensor
        tensor("hour", [5, 20], "INT64"),
        tensor("hour", [5, 20], "INT32"),
        tensor("hour", [5.0, 20.0], "FP32"),
    ],
    ids=["flat", "nested-n1", "nested-n", "flat-n1", "int64", "int32", "fp32"],
)
def test_every_tensor_layout_decodes_to_the_same_columns(hour: dict[str, Any]) -> None:
    columns, request_id = parse_infer(body(hour, tensor("carrier", ["UA", "B6"], "BYTES")))
    assert columns.n_rows == 2
    assert columns["hour"] == [5.0, 20.0]  # 5 == 5.0: the validator makes floats of both
    assert columns["carrier"] == ["UA", "B6"]
    assert request_id is None


def test_the_request_id_and_null_or_nan_as_missing() -> None:
    raw = b'{"id": "req-1.a:b", "inputs": [{"name": "temp", "shape": [3], "datatype": "FP64", "data": [NaN, null, -NaN]}, {"name": "carrier", "shape": [3], "datatype": "BYTES", "data": ["NaN", null, "x"]}]}'  # noqa: E501
    columns, request_id = parse_infer(raw)
    assert request_id == "req-1.a:b"
    assert columns["temp"] == [None, None, None]  # tritonclient sends a missing number as NaN
    assert columns["carrier"] == ["NaN", None, "x"]  # text that reads NaN stays text


def test_booleans_and_outputs_naming_predictions_are_accepted() -> None:
    columns, _ = parse_infer(body(tensor("flag", [True, False], "BOOL"), outputs=[{"name": "predictions"}]))
    assert columns["flag"] == [True, False]


@pytest.mark.parametrize(
    ("raw", "words", "column"),
    [
        (body(tensor("hour", [1.0, 2.0], shape=[3])), ["'hour'", "[3]", "3 value(s)", "has 2"], "hour"),
        (body(tensor("hour", [1.0], shape=[1, 2])), ["'hour'", "[n] or [n, 1]"], "hour"),
        (body(tensor("hour", [1.0], shape=[])), ["'hour'", "[n] or [n, 1]"], "hour"),
        (body(tensor("hour", [[[1.0]]], shape=[1, 1])), ["'hour'", "nests deeper"], "hour"),
        (body(tensor("hour", [1.0], "FP128")), ["'hour'", "unknown datatype 'FP128'", "FP64"], "hour"),
        (body(tensor("hour", ["five"])), ["'hour'", "FP64", "text", "'five'"], "hour"),
        (body(tensor("hour", [True])), ["'hour'", "FP64", "a boolean"], "hour"),
        (body(tensor("hour", [1.5], "INT64")), ["'hour'", "INT64", "a fractional number"], "hour"),
        (body(tensor("hour", [300], "INT8")), ["'hour'", "INT8's range"], "hour"),
        (body(tensor("carrier", [5], "BYTES")), ["'carrier'", "BYTES", "text", "an integer"], "carrier"),
        (body(tensor("carrier", [{"a": 1}], "BYTES")), ["'carrier'", "an object"], "carrier"),
        (body(tensor("hour", [1.0]), tensor("hour", [2.0])), ["'hour'", "more than once"], "hour"),
        (
            body(tensor("hour", [1.0, 2.0]), tensor("carrier", ["UA"], "BYTES")),
            ["same number of rows", "'hour' 2", "'carrier' 1"],
            "hour",
        ),
        (body({"name": "hour", "shape": [1], "datatype": "FP64"}), ["'hour'", '"data"'], "hour"),
        (body({"name": "hour", "shape": [1], "datatype": "FP64", "data": 5}), ["'hour'", "list"], "hour"),
    ],
    ids=[
        "shape-vs-data",
        "two-columns",
        "scalar-shape",
        "too-deep",
        "unknown-datatype",
        "fp64-text",
        "fp64-bool",
        "int-fraction",
        "int8-range",
        "bytes-number",
        "bytes-object",
        "duplicate",
        "lengths-differ",
        "no-data",
        "data-not-list",
    ],
)
def test_a_malformed_tensor_is_a_400_naming_its_input(raw: bytes, words: list[str], column: str) -> None:
    error = rejected(raw)
    assert error.status == 400
    assert error.column == column
    for word in words:
        assert word in str(error), (word, str(error))


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"{not json", ["not valid JSON"]),
        (b"[1, 2]", ['"inputs"']),
        (b'{"inputs": []}', ['"inputs"', "non-empty"]),
        (b'{"inputs": [5]}', ["inputs[0]"]),
        (b'{"inputs": [{"shape": [1], "datatype": "FP64", "data": [1]}]}', ["inputs[0]", '"name"']),
        (body(tensor("hour", [1.0]), id="has space"), ['"id"', "'has space'"]),
        (body(tensor("hour", [1.0]), id=7), ['"id"']),
        (body(tensor("hour", [1.0]), id="x" * 129), ['"id"']),
        (body(tensor("hour", [1.0]), outputs=[{"name": "probabilities"}]),
         ["'probabilities'", "predictions"]),
        (body(tensor("hour", [1.0]), parameters=[1]), ['"parameters"']),
    ],
    ids=["malformed", "not-object", "no-inputs", "input-not-object", "no-name", "bad-id", "id-not-text",
         "id-too-long", "unknown-output", "parameters-not-object"],
)
def test_a_malformed_request_is_a_400_saying_what_is_expected(raw: bytes, words: list[str]) -> None:
    error = rejected(raw)
    assert error.status == 400
    for word in words:
        assert word in str(error), (word, str(error))


def test_binary_tensor_data_is_refused_with_the_way_to_send_json() -> None:
    raw = body({"name": "hour", "shape": [1], "datatype": "FP64", "parameters": {"binary_data_size": 8}})
    error = rejected(raw)
    assert error.status == 415 and "binary_data=False" in str(error)


def test_the_answer_is_one_fp64_output() -> None:
    answer = json.loads(infer_response("flights", 3, "req-1", [0.25, 0.5]))
    assert answer == {
        "model_name": "flights",
        "model_version": "3",
        "id": "req-1",
        "outputs": [{"name": "predictions", "datatype": "FP64", "shape": [2], "data": [0.25, 0.5]}],
    }


def test_metadata_types_features_from_the_contract(served_project: Project) -> None:
    meta = model_metadata(served_project.load_served_model(), [1])
    assert meta["name"] == "flights" and meta["versions"] == ["1"]
    assert {(i["name"], i["datatype"]) for i in meta["inputs"]} == {
        ("hour", "FP64"), ("distance", "FP64"), ("temp", "FP64"), ("carrier", "BYTES")}
    assert meta["outputs"] == [{"name": "predictions", "datatype": "FP64", "shape": [-1]}]
    assert meta["parameters"]["optional_inputs"] == "flight_id,sched_dep"


# -- on a real socket ----------------------------------------------------------------------------

ROWS: list[dict[str, Any]] = [
    {"hour": 6, "distance": 300, "temp": 2.5, "carrier": "DL"},
    {"hour": 21, "distance": 2800, "temp": None, "carrier": "B6"},
    {"hour": 14, "distance": 1200, "temp": 10.0, "carrier": "ZZ"},
]


def v2_inputs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [tensor(c, [r[c] for r in rows]) for c in ("hour", "distance", "temp")] + [
        tensor("carrier", [[r["carrier"]] for r in rows], "BYTES", shape=[len(rows), 1])]


@pytest.fixture(scope="module")
def server(served_project: Project) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(served_project)) as running:
        yield running


@pytest.fixture
def client(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def test_infer_answers_what_invocations_answers_and_logs_the_rows(
        client: httpx.Client, served_project: Project) -> None:
    reference = client.post("/invocations", json={"dataframe_records": ROWS}).json()["predictions"]
    request_id = f"v2-{uuid.uuid4().hex}"
    response = client.post("/v2/models/flights/infer", json={"id": request_id, "inputs": v2_inputs(ROWS)})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_name"] == "flights" and answer["model_version"] == "1"
    assert answer["id"] == request_id
    [output] = answer["outputs"]
    assert output["name"] == "predictions" and output["datatype"] == "FP64" and output["shape"] == [3]
    assert output["data"] == pytest.approx(reference, abs=1e-12)
    assert response.headers["X-Model-Version"] == "1"
    assert response.headers["X-Request-Id"] == request_id
    log = served_project.logs.read_predictions()
    assert sorted(log[log["_request_id"] == request_id]["_prediction"]) == pytest.approx(sorted(reference))


def test_versioned_routes_serve_the_loaded_version_and_404_the_others(client: httpx.Client) -> None:
    response = client.post("/v2/models/flights/versions/1/infer", json={"inputs": v2_inputs(ROWS[:1])})
    assert response.status_code == 200, response.text
    assert response.json()["id"] == response.headers["X-Request-Id"]  # the one the app made up
    for path in ("/v2/models/flights/versions/2", "/v2/models/flights/versions/2/ready"):
        missing = client.get(path)
        assert missing.status_code == 404
        assert missing.json() == {"error": "version '2' of model 'flights' is not loaded here; loaded: 1"}
    missing = client.post("/v2/models/flights/versions/x/infer", json={"inputs": v2_inputs(ROWS)})
    assert missing.status_code == 404 and "loaded: 1" in missing.json()["error"]


def test_health_metadata_and_readiness(client: httpx.Client) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/flights/ready",
                 "/v2/models/flights/versions/1/ready"):
        assert client.get(path).status_code == 200, path
    assert client.get("/v2").json() == {"name": "modelloop", "version": modelloop.__version__,
                                        "extensions": []}
    meta = client.get("/v2/models/flights").json()
    assert [i["name"] for i in meta["inputs"]] == ["hour", "distance", "temp", "carrier"]
    assert client.get("/v2/models/flights/versions/1").json() == meta


def test_an_unknown_model_is_a_404_naming_the_served_one(client: httpx.Client) -> None:
    for response in (client.get("/v2/models/planes"), client.get("/v2/models/planes/ready"),
                     client.post("/v2/models/planes/infer", json={"inputs": v2_inputs(ROWS)})):
        assert response.status_code == 404
        assert response.json() == {"error": "model 'planes' is not served here; this server serves 'flights'"}


def test_errors_have_the_protocols_shape_and_leave_no_row(
        client: httpx.Client, served_project: Project) -> None:
    request_id = f"v2-{uuid.uuid4().hex}"
    inputs = [t for t in v2_inputs(ROWS) if t["name"] != "carrier"]
    response = client.post("/v2/models/flights/infer", json={"id": request_id, "inputs": inputs})
    assert response.status_code == 400
    assert response.json() == {"error": "column 'carrier' is missing"}
    log = served_project.logs.read_predictions()
    assert (log["_request_id"] == request_id).sum() == 0

    bad = client.post("/v2/models/flights/infer", json={"inputs": [tensor("hour", ["five"])]})
    assert bad.status_code == 400 and "'hour'" in bad.json()["error"]
    assert client.post("/v2/models/flights/infer", content=b"{oops").status_code == 400


def test_binary_tensors_and_compressed_bodies_are_refused(client: httpx.Client) -> None:
    response = client.post("/v2/models/flights/infer", content=b'{"inputs": []}\x00\x00',
                           headers={"Inference-Header-Content-Length": "14"})
    assert response.status_code == 415 and "binary_data=False" in response.json()["error"]
    response = client.post("/v2/models/flights/infer", content=b"\x1f\x8b",
                           headers={"Content-Encoding": "gzip"})
    assert response.status_code == 415 and "uncompressed" in response.json()["error"]


def test_a_body_past_max_body_is_a_413_in_the_protocols_shape(server: BackgroundServer) -> None:
    request = (b"POST /v2/models/flights/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 999999999\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):  # the server closes the connection after a 413
            reply += chunk
    head, _, answer = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply[:200]
    assert "serving.max_body" in json.loads(answer)["error"]


def test_every_infer_request_is_counted_open_while_it_is_read_and_scored(served_project: Project) -> None:
    """The batcher batches concurrent clients by its count of open requests: a v2 request that
    were not counted would look like a lone client and be scored alone."""
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    from modelloop.serving.oip import add_oip_routes

    model = served_project.load_served_model()
    open_requests = 0
    seen: list[int] = []

    def opened() -> None:
        nonlocal open_requests
        open_requests += 1

    def closed() -> None:
        nonlocal open_requests
        open_requests -= 1

    async def score(_: Any, rows: Any, request_id: str) -> list[float]:
        seen.append(open_requests)
        return [0.5] * rows.n_rows

    def error_response(exc: Exception, request_id: str) -> Response:
        if not isinstance(exc, BadRequest):
            raise exc
        return Response(json.dumps(exc.to_json()), status_code=exc.status, media_type="application/json")

    async def read_body(request: Request) -> bytes:
        return await request.body()

    app = FastAPI()

    @app.middleware("http")
    async def request_ids(request: Request, call_next: Any) -> Any:
        request.state.request_id = "app-id"
        return await call_next(request)

    add_oip_routes(app, name="flights", loaded=lambda: {1: model}, current=lambda: model, read_body=read_body,
                   score=score, error_response=error_response, opened=opened, closed=closed)
    with BackgroundServer(app) as running, httpx.Client(base_url=running.url, timeout=30) as http:
        answer = http.post("/v2/models/flights/infer", json={"inputs": v2_inputs(ROWS)})
        assert answer.status_code == 200, answer.text
        assert answer.json()["id"] == "app-id" and answer.json()["outputs"][0]["data"] == [0.5] * 3
        assert seen == [1] and open_requests == 0
        refused = http.post("/v2/models/flights/infer", json={"inputs": [tensor("hour", ["x"])]})
        assert refused.status_code == 400 and "'hour'" in refused.json()["error"]
        assert open_requests == 0  # closed on the way out of a refused request too
