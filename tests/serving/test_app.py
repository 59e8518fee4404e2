"""The scoring server on a real uvicorn socket: MLflow's protocol in, probabilities out, every
row logged, every bad request a 400 that names the column or the problem (never a 500)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pandas as pd
import pytest

import modelloop
from modelloop import ModelloopError
from modelloop.examples.server import BackgroundServer
from modelloop.project import Project
from modelloop.serving import create_app

FEATURES = ["hour", "distance", "temp", "carrier"]
ROWS: list[dict[str, Any]] = [
    {"hour": 6, "distance": 300, "temp": 2.5, "carrier": "DL"},
    {"hour": 21, "distance": 2800, "temp": None, "carrier": "B6"},
    {"hour": 14, "distance": 1200, "temp": 10.0, "carrier": "ZZ"},  # a carrier never seen
]


@pytest.fixture(scope="module")
def server(served_project: Project) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(served_project)) as running:
        yield running


@pytest.fixture
def client(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def new_id() -> str:
    return uuid.uuid4().hex


def split(rows: list[dict[str, Any]]) -> dict[str, Any]:
    columns = list(rows[0])
    return {"dataframe_split": {"columns": columns,
                                "data": [[row[c] for c in columns] for row in rows]}}


def invoke(client: httpx.Client, payload: Any, *, request_id: str | None = None,
           content_type: str = "application/json") -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"content-type": content_type}
    if request_id:
        headers["x-request-id"] = request_id
    return client.post("/invocations", content=body, headers=headers)


def logged(project: Project, request_id: str) -> pd.DataFrame:
    log = project.logs.read_predictions()
    return log[log["_request_id"] == request_id].reset_index(drop=True)


def test_dataframe_split_answers_probabilities_with_version_and_request_id(
        client: httpx.Client) -> None:
    request_id = new_id()
    response = invoke(client, split(ROWS), request_id=request_id)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 3
    assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in predictions)
    assert response.headers["X-Model-Version"] == "1"
    assert response.headers["X-Request-Id"] == request_id


def test_the_answer_is_what_the_registered_model_predicts(
        client: httpx.Client, served_project: Project) -> None:
    response = invoke(client, {"dataframe_records": ROWS})
    assert response.status_code == 200, response.text
    expected = served_project.registry.load_predictor("flights", 1).predict(pd.DataFrame(ROWS))
    assert response.json()["predictions"] == pytest.approx(expected.tolist())
    # The model learned the pattern: a late B6 long-haul is riskier than an early DL hop.
    assert expected[1] > expected[0]


@pytest.mark.parametrize("payload", [
    {"dataframe_records": ROWS},
    {"instances": ROWS},
    {"inputs": {name: [row[name] for row in ROWS] for name in FEATURES}},
], ids=["records", "instances", "inputs"])
def test_every_format_gets_the_same_answer(client: httpx.Client, payload: dict[str, Any]) -> None:
    reference = invoke(client, split(ROWS)).json()["predictions"]
    response = invoke(client, payload)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == pytest.approx(reference)


def test_csv_is_scored_too(client: httpx.Client) -> None:
    body = b"hour,distance,temp,carrier\n6,300,2.5,DL\n21,2800,,B6\n"
    response = invoke(client, body, content_type="text/csv")
    assert response.status_code == 200, response.text
    reference = invoke(client, split(ROWS[:2])).json()["predictions"]
    assert response.json()["predictions"] == pytest.approx(reference)


def test_a_request_id_is_made_up_when_the_client_sends_none(
        client: httpx.Client, served_project: Project) -> None:
    response = invoke(client, {"dataframe_records": ROWS[:1]})
    assert response.status_code == 200
    request_id = response.headers["X-Request-Id"]
    assert len(request_id) == 32 and int(request_id, 16) >= 0
    assert len(logged(served_project, request_id)) == 1


def test_rows_are_logged_with_their_id_time_and_prediction(
        client: httpx.Client, served_project: Project) -> None:
    request_id = new_id()
    rows = [{**row, "flight_id": f"req-{request_id[:6]}-{i}",
             "sched_dep": f"2024-03-0{i + 1}T08:30:00"} for i, row in enumerate(ROWS)]
    response = invoke(client, {"dataframe_records": rows}, request_id=request_id)
    assert response.status_code == 200, response.text

    log = logged(served_project, request_id)
    expected_columns = {*FEATURES, "flight_id", "sched_dep", "_prediction", "_model_version",
                        "_request_id", "_served_at"}
    assert expected_columns <= set(log.columns)
    log = log.sort_values("flight_id").reset_index(drop=True)
    assert log["flight_id"].tolist() == [row["flight_id"] for row in rows]
    assert log["sched_dep"].tolist() == [pd.Timestamp("2024-03-01 08:30"),
                                         pd.Timestamp("2024-03-02 08:30"),
                                         pd.Timestamp("2024-03-03 08:30")]
    assert log["_prediction"].tolist() == pytest.approx(response.json()["predictions"])
    assert log["_model_version"].tolist() == [1, 1, 1]
    assert log["carrier"].tolist() == ["DL", "B6", "ZZ"]
    assert log["temp"].isna().tolist() == [False, True, False]
    assert log["_served_at"].notna().all()


def test_times_with_an_offset_are_logged_in_utc(client: httpx.Client,
                                                served_project: Project) -> None:
    request_id = new_id()
    rows = [{**ROWS[0], "sched_dep": "2024-03-03T08:30:00+02:00"},
            {**ROWS[1], "sched_dep": "2024-03-03T08:30:00-05:00"}]
    response = invoke(client, {"dataframe_records": rows}, request_id=request_id)
    assert response.status_code == 200, response.text
    log = logged(served_project, request_id)
    assert sorted(log["sched_dep"]) == [pd.Timestamp("2024-03-03 06:30"),
                                        pd.Timestamp("2024-03-03 13:30")]


def test_rows_without_id_or_time_are_logged_under_the_request(
        client: httpx.Client, served_project: Project) -> None:
    request_id = new_id()
    before = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    assert invoke(client, split(ROWS), request_id=request_id).status_code == 200
    log = logged(served_project, request_id)
    assert sorted(log["flight_id"]) == [f"{request_id}-{i}" for i in range(3)]
    # With no timestamp column the serving time stands in for the row's time.
    assert (log["sched_dep"] == log["_served_at"]).all()
    assert (log["_served_at"] >= before).all()


BAD_REQUESTS: list[tuple[Any, ...]] = [
    ("missing column",
     lambda: json.dumps({"dataframe_records": [{k: v for k, v in ROWS[0].items()
                                                if k != "carrier"}]}).encode(),
     "application/json", "missing_column", "carrier", "column 'carrier' is missing"),
    ("text in a numeric column",
     lambda: json.dumps({"dataframe_records": [{**ROWS[0], "distance": "far"}]}).encode(),
     "application/json", "wrong_type", "distance", "'far'"),
    ("null where the contract forbids it",
     lambda: json.dumps({"dataframe_records": [ROWS[0], {**ROWS[1], "hour": None}]}).encode(),
     "application/json", "null", "hour", "rows [1]"),
    ("bad timestamp",
     lambda: json.dumps({"dataframe_records": [{**ROWS[0], "sched_dep": "soon"}]}).encode(),
     "application/json", "wrong_type", "sched_dep", "'soon'"),
    ("malformed JSON",
     lambda: b'{"dataframe_records": [{"hour": 5,}]}',
     "application/json", "malformed_json", None, "not valid JSON"),
    ("empty rows",
     lambda: json.dumps({"dataframe_records": []}).encode(),
     "application/json", "empty", None, "no rows"),
    ("empty split",
     lambda: json.dumps({"dataframe_split": {"columns": FEATURES, "data": []}}).encode(),
     "application/json", "empty", None, "no rows"),
    ("unsupported content type",
     lambda: b"hour=5&carrier=UA",
     "application/x-www-form-urlencoded", "unsupported_media_type", None, "text/csv", 415),
    ("ragged split",
     lambda: json.dumps({"dataframe_split": {"columns": FEATURES, "data": [[1, 2]]}}).encode(),
     "application/json", "bad_format", None, "row 0 has 2 values but there are 4 columns"),
    ("no format key",
     lambda: json.dumps({"rows": ROWS}).encode(),
     "application/json", "bad_format", None, "dataframe_split"),
    ("malformed CSV",
     lambda: b'hour,distance,temp,carrier\n6,300,2.5,"DL\n',
     "text/csv", "malformed_csv", None, "not valid CSV"),
]


@pytest.mark.parametrize(("body", "content_type", "problem", "column", "says", "status"),
                         [(*case[1:], 400)[:6] for case in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_a_bad_request_is_a_4xx_that_names_the_problem(
        client: httpx.Client, served_project: Project, body: Callable[[], bytes],
        content_type: str, problem: str, column: str | None, says: str, status: int) -> None:
    request_id = new_id()
    response = invoke(client, body(), request_id=request_id, content_type=content_type)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["error_code"] == "BAD_REQUEST"
    assert error["problem"] == problem
    assert error.get("column") == column
    assert says in error["message"]
    if column is not None:
        assert repr(column) in error["message"]
    assert response.headers["X-Request-Id"] == request_id
    assert response.headers["X-Model-Version"] == "1"
    assert logged(served_project, request_id).empty  # nothing half-logged


def test_every_broken_column_is_named_in_one_answer(client: httpx.Client) -> None:
    rows = [{"hour": None, "distance": "far", "temp": 1.0}]  # and no carrier at all
    response = invoke(client, {"dataframe_records": rows})
    assert response.status_code == 400
    message = response.json()["message"]
    for column in ("'hour'", "'distance'", "'carrier'"):
        assert column in message


def test_a_repeated_column_is_a_400_not_a_500(server: BackgroundServer) -> None:
    payload = {"dataframe_split": {"columns": ["hour", "hour", "distance", "temp", "carrier"],
                                   "data": [[5, 5, 300, 2.0, "UA"]]}}
    # A fresh connection: after a 500 the server drops the connection it answered on.
    response = httpx.post(f"{server.url}/invocations", json=payload, timeout=30)
    assert response.status_code == 400
    assert "hour" in response.json()["message"]


def test_concurrent_requests_are_all_answered_and_logged(
        client: httpx.Client, server: BackgroundServer, served_project: Project) -> None:
    ids = [new_id() for _ in range(8)]

    def one(request_id: str) -> int:
        with httpx.Client(base_url=server.url, timeout=30) as own:
            return invoke(own, split(ROWS), request_id=request_id).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(one, ids)) == [200] * 8
    for request_id in ids:
        assert len(logged(served_project, request_id)) == 3


def test_labels_are_stored(client: httpx.Client, served_project: Project) -> None:
    ids = [f"label-{new_id()}" for _ in range(2)]
    response = client.post("/labels", json=[{"flight_id": ids[0], "delayed": 1},
                                            {"flight_id": ids[1], "delayed": 0}])
    assert response.status_code == 200, response.text
    assert response.json() == {"stored": 2, "skipped": 0}
    labels = served_project.logs.read_labels()
    mine = labels[labels["flight_id"].isin(ids)].set_index("flight_id")["delayed"]
    assert mine.to_dict() == {ids[0]: 1, ids[1]: 0}


def test_labels_without_the_id_column_are_a_400_naming_it(
        client: httpx.Client, served_project: Project) -> None:
    before = len(served_project.logs.read_labels())
    response = client.post("/labels", json=[{"id": "F1", "delayed": 1}])
    assert response.status_code == 400
    assert "'flight_id'" in response.json()["message"]
    assert len(served_project.logs.read_labels()) == before


def test_a_label_whose_target_is_empty_has_not_arrived_yet(client: httpx.Client) -> None:
    response = client.post("/labels", content=b'[{"flight_id": "F1", "delayed": null}]',
                           headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.json() == {"stored": 0, "skipped": 1}


@pytest.mark.parametrize(("body", "says"), [
    (b'[{"flight_id": "F1"}]', "'delayed'"),
    (b"[{oops", "not valid JSON"),
    (b'{"flight_id": "F1", "delayed": 1}', "list of objects"),
])
def test_bad_labels_are_a_400_that_says_why(client: httpx.Client, body: bytes, says: str) -> None:
    response = client.post("/labels", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert says in response.json()["message"]


def test_ping_health_and_version_answer(client: httpx.Client) -> None:
    assert client.get("/ping").status_code == 200
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "model": "flights", "version": 1}
    version = client.get("/version").json()
    assert version == {"modelloop": modelloop.__version__, "model": "flights", "version": 1}
    assert health.headers["X-Model-Version"] == "1"


def test_an_unknown_route_is_a_json_404(client: httpx.Client) -> None:
    response = client.get("/predict")
    assert response.status_code == 404
    assert response.json()["error_code"] == "HTTP_ERROR"


def test_a_project_without_a_champion_cannot_be_served(
        make_project: Callable[..., Project]) -> None:
    with pytest.raises(ModelloopError) as caught:
        create_app(make_project())
    assert "no champion yet" in str(caught.value) and "modelloop train" in str(caught.value)
