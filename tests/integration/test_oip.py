"""The Open Inference Protocol (v2) as its own client speaks it: tritonclient.http against the real
`modelloop serve` process gets plain MLflow's numbers for the same rows, and the rows it sent are
in the prediction log like any other served rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as httpclient  # the dev extra installs it
from tritonclient.utils import InferenceServerException

from modelloop.project import open_project
from tests.integration.conftest import ServerProcess, cli_json

pytestmark = pytest.mark.integration

START = datetime(2024, 1, 1)
NAME = "signups"
NUMERIC = ["visits", "age"]
CATEGORICAL = ["channel", "region"]
PROJECT = f"""\
name: {NAME}
task: classification
data:
  source: data.parquet
  timestamp: event_time
  target: converted
  id: row_id
  features:
    numeric: [{", ".join(NUMERIC)}]
    categorical: [{", ".join(CATEGORICAL)}]
model:
  estimator: sklearn.linear_model.LogisticRegression
  params: {{max_iter: 500}}
training:
  window: 40d
evaluation:
  metric: roc_auc
  holdout: 10d
gate:
  floor: 0.55
monitoring:
  label_delay: 1d
"""


def signups(days: int = 60, per_day: int = 150, seed: int = 5) -> pd.DataFrame:
    """Ads convert more, and so do frequent visitors; `age` has gaps (a nullable feature)."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    minutes = np.sort(rng.integers(0, days * 1440, n))
    channel = rng.choice(["web", "mail", "ads"], n, p=[0.5, 0.3, 0.2])
    visits = rng.integers(1, 20, n).astype("float64")
    logit = -1.5 + 0.12 * visits + np.where(channel == "ads", 1.2, 0.0)
    return pd.DataFrame({
        "row_id": [f"s{i}" for i in range(n)],
        "event_time": [START + timedelta(minutes=int(m)) for m in minutes],
        "visits": visits,
        "age": np.where(rng.random(n) < 0.05, np.nan, rng.integers(18, 80, n).astype("float64")),
        "channel": channel,
        "region": rng.choice(["n", "s", "e", "w"], n),
        "converted": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64"),
    })


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("oip")
    frame = signups()
    frame.to_parquet(directory / "data.parquet", index=False)
    (directory / "modelloop.yaml").write_text(PROJECT, encoding="utf-8")
    result = cli_json("train", "--as-of", "2024-03-01", cwd=directory)
    assert result["decision"]["outcome"] == "promoted", result
    return {"dir": directory, "frame": frame}


def plain_mlflow(directory: Path, csv: Path) -> list[float]:
    """Plain MLflow in a process where modelloop cannot be imported, on the rows read from CSV."""
    script = textwrap.dedent(f"""
        import json, sys
        sys.modules["modelloop"] = None  # importing modelloop raises in this process
        import mlflow, pandas as pd
        mlflow.set_tracking_uri("sqlite:///{directory / '.modelloop' / 'mlflow.db'}")
        model = mlflow.pyfunc.load_model("models:/{NAME}@champion")
        print(json.dumps(model.predict(pd.read_csv({str(csv)!r})).tolist()))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "MLFLOW_LOGGING_LEVEL": "ERROR"}, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def served(trained: dict[str, Any]) -> Iterator[Any]:
    server = ServerProcess(trained["dir"])
    client = httpclient.InferenceServerClient(
        url=f"127.0.0.1:{server.port}", connection_timeout=30, network_timeout=60)
    try:
        yield client
    finally:
        client.close()
        server.stop()


def tensors(rows: pd.DataFrame, columns: list[str]) -> list[Any]:
    """One InferInput per column, as JSON tensors: numbers as FP64 (a gap is NaN), text as BYTES."""
    inputs = []
    for column in columns:
        if column in NUMERIC:
            values = rows[column].to_numpy(dtype="float64")
            tensor = httpclient.InferInput(column, [len(rows)], "FP64")
        else:
            values = rows[column].astype(str).to_numpy(dtype=object)
            tensor = httpclient.InferInput(column, [len(rows)], "BYTES")
        inputs.append(tensor.set_data_from_numpy(values, binary_data=False))
    return inputs


def predictions() -> list[Any]:
    return [httpclient.InferRequestedOutput("predictions", binary_data=False)]


def test_health_and_metadata(served: Any) -> None:
    assert served.is_server_live()
    assert served.is_server_ready()
    assert served.is_model_ready(NAME)
    assert served.is_model_ready(NAME, "1")
    assert not served.is_model_ready("nope")
    assert not served.is_model_ready(NAME, "7")
    server = served.get_server_metadata()
    assert server["name"] == "modelloop" and server["extensions"] == []
    meta = served.get_model_metadata(NAME)
    assert meta["name"] == NAME and meta["versions"] == ["1"]
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {
        "visits": "FP64", "age": "FP64", "channel": "BYTES", "region": "BYTES"}
    assert meta["outputs"] == [{"name": "predictions", "datatype": "FP64", "shape": [-1]}]


def test_infer_gives_plain_mlflows_numbers_and_logs_the_rows(trained: dict[str, Any], served: Any) -> None:
    directory, frame = trained["dir"], trained["frame"]
    later = frame[frame["event_time"] > START + timedelta(days=55)].head(300)
    assert later["age"].isna().sum() > 3  # gaps travel as tritonclient's NaN
    csv = directory / "later.csv"
    later.drop(columns=["converted"]).to_csv(csv, index=False)
    expected = plain_mlflow(directory, csv)

    sent = later.assign(event_time=later["event_time"].map(datetime.isoformat))
    request_id = "oip-infer-1"
    result = served.infer(NAME, tensors(sent, [*NUMERIC, *CATEGORICAL, "row_id", "event_time"]),
                          outputs=predictions(), request_id=request_id)
    got = result.as_numpy("predictions")
    assert got.shape == (len(later),)
    assert got.tolist() == pytest.approx(expected, abs=1e-9)
    response = result.get_response()
    assert response["id"] == request_id and response["model_version"] == "1"

    # The same rows through a versioned route, outputs left to the client's default: same numbers.
    again = served.infer(NAME, tensors(later.head(20), [*NUMERIC, *CATEGORICAL]), model_version="1")
    assert again.as_numpy("predictions").tolist() == pytest.approx(expected[:20], abs=1e-9)

    # Acknowledged rows are in the prediction log (read here from another process).
    log = open_project(directory / "modelloop.yaml").logs.read_predictions()
    logged = log[log["_request_id"] == request_id].sort_values("row_id")
    assert sorted(logged["row_id"]) == sorted(later["row_id"])
    by_id = dict(zip(later["row_id"], expected, strict=True))
    assert logged["_prediction"].tolist() == pytest.approx([by_id[r] for r in logged["row_id"]], abs=1e-9)
    assert (logged["_model_version"] == 1).all()


def test_a_missing_feature_is_a_400_naming_it(trained: dict[str, Any], served: Any) -> None:
    rows = trained["frame"].tail(3)
    with pytest.raises(InferenceServerException) as caught:
        served.infer(NAME, tensors(rows, ["visits", "age", "channel"]), outputs=predictions(),
                     request_id="oip-missing")
    assert caught.value.status() == "400"
    assert "'region'" in caught.value.message() and "missing" in caught.value.message()
    log = open_project(trained["dir"] / "modelloop.yaml").logs.read_predictions()
    assert not (log["_request_id"] == "oip-missing").any()


def test_a_wrong_model_name_is_a_404_naming_the_served_one(trained: dict[str, Any], served: Any) -> None:
    with pytest.raises(InferenceServerException) as caught:
        served.infer("flights", tensors(trained["frame"].tail(2), [*NUMERIC, *CATEGORICAL]),
                     outputs=predictions())
    assert caught.value.status() == "404"
    assert caught.value.message() == f"model 'flights' is not served here; this server serves '{NAME}'"
