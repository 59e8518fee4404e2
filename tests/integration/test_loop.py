"""The whole loop through the real CLI and a real HTTP server, on generated data with drift
injected at day 60: drift is detected, retraining fires, the gate promotes the better candidate
and rejects a worse one, and the served numbers match plain MLflow's."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.integration.conftest import ServerProcess, cli_json, run_cli
from tests.integration.synthetic import DRIFT_DAY, day, make_frame, rows_between, write_project

pytestmark = pytest.mark.integration

FEATURES = ["x1", "x2", "x3", "seg"]


def _split(rows: pd.DataFrame) -> bytes:
    body = rows.to_json(orient="split", date_format="iso", index=False, double_precision=15)
    return b'{"dataframe_split": ' + body.encode() + b"}"


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("loop")
    frame = make_frame()
    frame.to_parquet(root / "data.parquet", index=False)
    write_project(root)
    out: dict[str, Any] = {"root": root, "frame": frame}
    out["train"] = cli_json("train", "--as-of", day(45).isoformat(), cwd=root)

    server = ServerProcess(root)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for d in range(45, 75):
                rows = rows_between(frame, d, d)
                answer = client.post(
                    "/invocations",
                    content=_split(rows[["row_id", "event_time", *FEATURES]]),
                    headers={"Content-Type": "application/json", "X-Request-Id": f"day-{d}"},
                )
                assert answer.status_code == 200, answer.text
                assert answer.headers["X-Request-Id"] == f"day-{d}"
                if d > 45 and d != 60:
                    labels = rows_between(frame, d - 1, d - 1)[["row_id", "label"]]
                    client.post("/labels", json=labels.to_dict(orient="records")).raise_for_status()
        # One day's labels arrive as a file instead, through the CLI.
        rows_between(frame, 59, 59)[["row_id", "label"]].to_csv(root / "labels-day59.csv", index=False)
        rows_between(frame, 74, 74)[["row_id", "label"]].to_parquet(root / "labels-day74.parquet")
        out["ingest"] = [
            cli_json("labels", "ingest", "labels-day59.csv", cwd=root),
            cli_json("labels", "ingest", "labels-day74.parquet", cwd=root),
        ]
    finally:
        server.stop()

    out["calm"] = cli_json("monitor", "--as-of", day(DRIFT_DAY).isoformat(), cwd=root)
    out["drifted"] = cli_json("monitor", "--as-of", day(75).isoformat(), cwd=root)
    out["again"] = cli_json("monitor", "--as-of", day(75).isoformat(), cwd=root)
    write_project(
        root,
        estimator="sklearn.dummy.DummyClassifier",
        params="{strategy: prior}",
        name="worse.yaml",
    )
    out["worse"] = cli_json(
        "train", "--project", "worse.yaml", "--as-of", day(75).isoformat(), cwd=root
    )
    out["status"] = cli_json("status", cwd=root)
    out["server"] = ServerProcess(root)
    yield out
    out["server"].stop()


def test_first_model_is_promoted_by_the_floor(story: dict[str, Any]) -> None:
    decision = story["train"]["decision"]
    assert story["train"]["version"] == 1
    assert decision["outcome"] == "promoted"
    assert any("no champion" in reason for reason in decision["reasons"])
    assert story["train"]["holdout_score"] > 0.8


def test_labels_ingested_from_files(story: dict[str, Any]) -> None:
    assert [i["stored"] for i in story["ingest"]] == [160, 160]


def test_calm_week_raises_no_alert(story: dict[str, Any]) -> None:
    calm = story["calm"]
    assert calm["alert"] is False and calm["breaches"] == []
    assert calm["n_labelled"] >= 200 and calm["metric"]["value"] > 0.8
    assert calm["trigger"] is None


def test_drift_is_detected_and_retraining_promotes_a_better_candidate(
    story: dict[str, Any],
) -> None:
    drifted = story["drifted"]
    assert drifted["alert"] is True
    assert {"drift", "performance"} <= set(drifted["breach_kinds"]) <= {"drift", "performance", "quality"}
    # Quality findings are what the drift made: values past the training range of the shifted
    # features, and the segment "d" that appears with the drift.
    quality = {b["subject"] for b in drifted["breaches"] if b["kind"] == "quality"}
    assert quality <= {"out_of_range:x1", "out_of_range:x2", "unseen:seg"}, quality
    assert drifted["quality"]["unseen_categories"]["seg"]["values"] == ["d"]
    assert {"x1", "x2"} <= set(drifted["drift"]["drifted"])
    assert "x3" not in drifted["drift"]["drifted"]
    assert drifted["metric"]["value"] < 0.75
    assert drifted["trigger"]["fired"] is True and drifted["trigger"]["version"] == 2
    decision = drifted["decision"]
    assert decision["outcome"] == "promoted" and decision["champion"] == 1
    assert decision["candidate_score"] > decision["champion_score"] + 0.05
    assert Path(drifted["report_html"]).is_file()
    assert "x2" in Path(drifted["report_html"]).read_text()


def test_the_same_window_monitored_again_does_not_retrain_again(story: dict[str, Any]) -> None:
    again = story["again"]
    assert again["alert"] is True
    assert again["trigger"]["fired"] is False and "already fired" in again["trigger"]["skipped"]
    assert again["decision"] is None


def test_gate_rejects_a_worse_candidate_with_its_reasons(story: dict[str, Any]) -> None:
    decision = story["worse"]["decision"]
    assert story["worse"]["version"] == 3
    assert decision["outcome"] == "rejected"
    assert decision["champion"] == 2
    assert any("FAILED" in reason for reason in decision["reasons"])
    assert story["status"]["champion"]["version"] == 2
    assert story["status"]["previous"]["version"] == 1


def test_status_reports_champion_monitoring_and_alerts(story: dict[str, Any]) -> None:
    status = story["status"]
    assert status["champion"]["status"] == "champion"
    assert status["last_monitoring"]["result"]["alert"] is True
    assert {"drift", "performance"} <= {a["kind"] for a in status["open_alerts"]}
    assert {(a["kind"], a["subject"]) for a in status["open_alerts"] if a["kind"] == "drift"} >= {
        ("drift", "x1"), ("drift", "x2")}
    assert status["last_decision"]["outcome"] == "rejected"


def test_restarted_server_serves_the_new_champion_and_logs_rows(story: dict[str, Any]) -> None:
    rows = rows_between(story["frame"], 80, 80).head(50)
    answer = httpx.post(
        f"{story['server'].url}/invocations",
        json={"dataframe_records": json.loads(rows.to_json(orient="records", date_format="iso"))},
    )
    assert answer.status_code == 200
    assert answer.headers["X-Model-Version"] == "2"
    assert len(answer.json()["predictions"]) == 50
    # Acknowledged rows are in the write-ahead log at once; another process (monitoring, here
    # this test) reads them from there until the server's flusher moves them to Parquet.
    from modelloop.project import open_project

    project = open_project(story["root"] / "modelloop.yaml")
    log = project.logs.read_predictions(day(80), day(81))
    logged = log[log["_request_id"] == answer.headers["X-Request-Id"]]
    assert len(logged) == 50
    part = (
        story["root"] / ".modelloop" / "predictions" / "synthetic-loop" / f"date={day(80):%Y-%m-%d}"
    )
    assert {
        "x1",
        "x2",
        "x3",
        "seg",
        "row_id",
        "event_time",
        "_prediction",
        "_model_version",
        "_request_id",
        "_served_at",
    } <= set(logged.columns)
    assert logged["_model_version"].unique().tolist() == [2]
    assert not list(part.glob("*.tmp"))


PLAIN_MLFLOW = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "modelloop" or name.startswith("modelloop."):
            raise ImportError("modelloop is not installed here")
sys.meta_path.insert(0, Block())
import mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model("models:/synthetic-loop@champion")
rows = pd.read_json(sys.argv[2], orient="split")
print(json.dumps([float(v) for v in model.predict(rows)]))
assert not any(m == "modelloop" or m.startswith("modelloop.") for m in sys.modules)
"""


def test_plain_mlflow_pyfunc_gives_the_servers_numbers(
    story: dict[str, Any], tmp_path: Path
) -> None:
    rows = rows_between(story["frame"], 81, 81).head(40)[FEATURES]
    served = httpx.post(
        f"{story['server'].url}/invocations",
        content=_split(rows),
        headers={"Content-Type": "application/json"},
    ).json()["predictions"]
    (tmp_path / "rows.json").write_text(
        rows.to_json(orient="split", index=False, double_precision=15)
    )
    uri = f"sqlite:///{story['root'] / '.modelloop' / 'mlflow.db'}"
    done = subprocess.run(
        [sys.executable, "-c", PLAIN_MLFLOW, uri, str(tmp_path / "rows.json")],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    plain = json.loads(done.stdout.strip().splitlines()[-1])
    assert plain == served
    assert all(0.0 <= p <= 1.0 for p in plain)


@pytest.mark.parametrize(
    ("body", "column", "problem"),
    [
        ({"dataframe_records": [{"x1": 1.0, "x2": 2.0, "x3": 0.1}]}, "seg", "missing_column"),
        (
            {"dataframe_records": [{"x1": "high", "x2": 2.0, "x3": 0.1, "seg": "a"}]},
            "x1",
            "wrong_type",
        ),
        ({"dataframe_records": [{"x1": None, "x2": 2.0, "x3": 0.1, "seg": "a"}]}, "x1", "null"),
        ({"dataframe_split": {"columns": ["x1"], "data": [[1, 2]]}}, None, "bad_format"),
        ({"dataframe_records": []}, None, "empty"),
        ({"rows": [1]}, None, "bad_format"),
    ],
)
def test_bad_requests_get_a_400_that_names_the_problem(
    story: dict[str, Any], body: dict[str, Any], column: str | None, problem: str
) -> None:
    answer = httpx.post(
        f"{story['server'].url}/invocations", json=body, headers={"X-Request-Id": "bad-1"}
    )
    assert answer.status_code == 400, answer.text
    payload = answer.json()
    assert payload["problem"] == problem
    if column:
        assert payload["column"] == column and repr(column) in payload["message"]
    assert answer.headers["X-Request-Id"] == "bad-1" and answer.headers["X-Model-Version"] == "2"


def test_malformed_json_and_nullable_feature(story: dict[str, Any]) -> None:
    url = f"{story['server'].url}/invocations"
    broken = httpx.post(
        url, content=b'{"dataframe_split": {', headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400 and broken.json()["problem"] == "malformed_json"
    fine = httpx.post(
        url, json={"dataframe_records": [{"x1": 1.0, "x2": 2.0, "x3": None, "seg": "zzz"}]}
    )
    assert fine.status_code == 200, (
        fine.text
    )  # x3 had nulls in training; "zzz" is an unseen category


def test_bad_project_file_names_file_and_field(tmp_path: Path) -> None:
    path = write_project(tmp_path)
    path.write_text(
        path.read_text()
        .replace("drift_threshold: 0.2", "drift_threshold: high")
        .replace("holdout: 5d", "holdout: 5 days")
    )
    done = run_cli("status", cwd=tmp_path, check=False)
    assert done.returncode == 2
    assert "modelloop.yaml" in done.stderr and "monitoring.drift_threshold" in done.stderr
    assert "evaluation.holdout" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_data_breaking_the_contract_fails_and_registers_nothing(tmp_path: Path) -> None:
    frame = make_frame(days=50)
    frame.to_parquet(tmp_path / "data.parquet", index=False)
    write_project(tmp_path)
    assert cli_json("train", "--as-of", day(30).isoformat(), cwd=tmp_path)["version"] == 1
    broken = frame.assign(x1=frame["x1"].astype(str))  # an export that wrote numbers as text
    late = broken["event_time"] >= pd.Timestamp(day(35))
    broken.loc[late & (broken.index % 97 == 0), "x1"] = "n/a"
    broken = broken.drop(columns=["x2"])
    broken.to_parquet(tmp_path / "data.parquet", index=False)
    done = run_cli("train", "--as-of", day(45).isoformat(), cwd=tmp_path, check=False)
    assert done.returncode == 1
    assert (
        "'x2' is missing" in done.stderr
        and "'x1'" in done.stderr
        and "nothing was registered" in done.stderr
    )
    assert "Traceback" not in done.stderr
    status = cli_json("status", cwd=tmp_path)
    assert status["champion"]["version"] == 1 and status["challenger"] is None
    reports = list(
        (tmp_path / ".modelloop" / "reports" / "synthetic-loop").glob("validation-*.json")
    )
    assert reports and "x2" in reports[0].read_text()


def test_labels_that_are_not_zero_or_one_are_refused(story: dict[str, Any]) -> None:
    answer = httpx.post(f"{story['server'].url}/labels", json=[{"row_id": "r000001", "label": "late"}])
    assert answer.status_code == 400
    assert "'label'" in answer.json()["message"] and "0 or 1" in answer.json()["message"]
    missing = httpx.post(f"{story['server'].url}/labels", json=[{"label": 1}])
    assert missing.status_code == 400 and "row_id" in missing.json()["message"]
